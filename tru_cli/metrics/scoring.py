"""Model-side primitives of evaluation: teacher-forced answer NLLs and greedy answers, batched.

Sequences are sorted by length before batching (little padding), every answer variant of every
question goes through the same batched forward passes, and generation stops each row at EOS.
"""

from __future__ import annotations

import torch

from tru_cli.data.encoding import IGNORE, PromptFormatter, pad
from tru_cli.methods.losses import token_nll


def answer_nlls(model, formatter: PromptFormatter, pairs: list[tuple[str, str]],
                batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, answer-token count) of each answer given its question."""
    return encoded_nlls(model, formatter, [formatter.encode(q, a) for q, a in pairs], batch_size)


@torch.no_grad()
def encoded_nlls(model, formatter: PromptFormatter, encoded: list[dict], batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, answer-token count) of already encoded sequences, in length-sorted batches."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = pad([encoded[i] for i in chunk], formatter.tok.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        for i, t, c in zip(chunk, total.tolist(), count.tolist(), strict=True):
            out[i] = (t, int(c))
    return out


def extraction_strength(matches: list[bool]) -> float:
    """Extraction strength (Carlini et al. 2021, as OpenUnlearning reports it for TOFU/MUSE):
    1 - k/n for the smallest k such that the teacher-forced argmax predictions equal the answer
    from token k to the end (n answer tokens); 1 = the whole answer is extracted, 0 = not even its
    last token. (OpenUnlearning's loop stops at k = n-1, reporting 1/n instead of 0 when no
    token matches; tru reports 0, the definition.)"""
    n = len(matches)
    k = n
    while k > 0 and matches[k - 1]:
        k -= 1
    return 1.0 - k / n if n else 0.0


@torch.no_grad()
def answer_token_stats(model, formatter: PromptFormatter, encoded: list[dict], batch_size: int) -> list[dict]:
    """Per sequence: summed answer NLL and token count, the answer tokens' log-probabilities (for
    Min-K% membership scores) and extraction strength, in length-sorted batches."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    out: list[dict] = [{}] * len(encoded)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = pad([encoded[i] for i in chunk], formatter.tok.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        hits = logits.argmax(-1) == labels
        for row, i in enumerate(chunk):
            lp = logprobs[row][mask[row]].cpu()
            out[i] = {"total": float(-lp.sum()), "count": int(mask[row].sum()), "logprobs": lp.numpy(),
                      "extraction_strength": extraction_strength(hits[row][mask[row]].tolist())}
    return out


def greedy_answers(model, formatter: PromptFormatter, questions: list[str], max_new_tokens: int,
                   batch_size: int) -> list[str]:
    """Greedy answers to plain questions."""
    return greedy_from_prompts(model, formatter, [formatter.prompt_ids(q) for q in questions],
                               max_new_tokens, batch_size)


def greedy_from_prompts(model, formatter: PromptFormatter, prompts: list[list[int]], max_new_tokens: int,
                        batch_size: int) -> list[str]:
    """Greedy generations (special tokens stripped), left-padded batches sorted by prompt length."""
    return [text for text, _ in generate_from_prompts(model, formatter.tok, prompts, max_new_tokens,
                                                      batch_size, do_sample=False)]


@torch.no_grad()
def generate_from_prompts(model, tok, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                          **sampling) -> list[tuple[str, int]]:
    """(generation, its token count) per prompt; `sampling` goes to `generate` (do_sample, ...)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[tuple[str, int]] = [("", 0)] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                   max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id, **sampling)
        for row, i in enumerate(chunk):
            new = generated[row, width:]
            count = int((new != tok.pad_token_id).sum()) if tok.pad_token_id is not None else len(new)
            out[i] = (tok.decode(new, skip_special_tokens=True).strip(), count)
    return out
