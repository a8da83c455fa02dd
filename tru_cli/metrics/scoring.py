"""Model-side statistics of evaluation: teacher-forced answer NLLs and token statistics, and greedy
answers, all through the batched loops of `models/batching.py` (every answer variant of every
question goes through the same length-sorted forward passes; generation stops each row at EOS)."""

from __future__ import annotations

import torch

from tru_cli.data.encoding import IGNORE, PromptFormatter
from tru_cli.methods.losses import token_nll
from tru_cli.models import batching


def encoded_nlls(model, formatter: PromptFormatter, encoded: list[dict], batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, answer-token count) of already encoded sequences."""
    def per_batch(logits, batch):
        total, count = token_nll(logits, batch["labels"])
        return [(t, int(c)) for t, c in zip(total.tolist(), count.tolist(), strict=True)]

    return batching.map_forward(model, encoded, formatter.tok.pad_token_id, batch_size, per_batch)


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


def answer_token_stats(model, formatter: PromptFormatter, encoded: list[dict], batch_size: int,
                       label: str = "scoring") -> list[dict]:
    """Per sequence: summed answer NLL and token count (the closing EOS included, as TOFU's and
    OpenUnlearning's probabilities count it), and, over the answer's own tokens only (the closing EOS
    left out, as OpenUnlearning's token-wise scores leave it out), the log-probabilities for Min-K%
    membership scores and extraction strength. Counting the EOS there added 0.0218 to extraction
    strength on a tiny Llama and moved privleak by 3.4%."""
    eos = formatter.tok.eos_token_id

    def per_batch(all_logits, batch):
        logits = all_logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        hits = logits.argmax(-1) == labels
        out = []
        for row in range(len(labels)):
            lp = logprobs[row][mask[row]].cpu()
            row_hits = hits[row][mask[row]].tolist()
            answer = len(lp) - 1 if len(lp) and int(labels[row][mask[row]][-1]) == eos else len(lp)
            out.append({"total": float(-lp.sum()), "count": int(mask[row].sum()), "logprobs": lp[:answer].numpy(),
                        "extraction_strength": extraction_strength(row_hits[:answer])})
        return out

    return batching.map_forward(model, encoded, formatter.tok.pad_token_id, batch_size, per_batch, label)


def greedy_answers(model, formatter: PromptFormatter, questions: list[str], max_new_tokens: int,
                   batch_size: int, label: str = "answers") -> list[str]:
    """Greedy answers to plain questions."""
    return greedy_from_prompts(model, formatter, [formatter.prompt_ids(q) for q in questions],
                               max_new_tokens, batch_size, label)


def greedy_from_prompts(model, formatter: PromptFormatter, prompts: list[list[int]], max_new_tokens: int,
                        batch_size: int, label: str = "answers") -> list[str]:
    """Greedy generations (special tokens stripped)."""
    return [text for text, _ in batching.generate(model, formatter.tok, prompts, max_new_tokens,
                                                  batch_size, label, do_sample=False)]
