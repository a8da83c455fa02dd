"""The two batched loops every model-side computation goes through: a teacher-forced forward pass
over many sequences, and generation from many prompts.

Both sort by length before batching (little padding) and hand results back in the input order.
Scoring, membership inference, reference NLLs, the local chat backend and the attacks all call
these two, so a speed-up here (or a change of padding) reaches every one of them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from tru_cli import progress
from tru_cli.data.encoding import IGNORE, pad


def by_length(lengths: Sequence[int]) -> list[int]:
    """Positions sorted by sequence length (stable: equal lengths keep their order)."""
    return sorted(range(len(lengths)), key=lambda i: lengths[i])


def labelled_window(labels: torch.Tensor) -> int:
    """The first column whose logits any row's labels need (the one before the earliest label): the
    columns before it, the shared prompt prefix (system prompt, chat template), predict nothing scored."""
    labelled = (labels != IGNORE).any(dim=0).nonzero()
    return max(int(labelled[0]) - 1, 0) if len(labelled) else 0


def _base(model):
    """The transformers model itself: the one a PEFT wrapper wraps, or `model`."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def keeps_logits(model) -> bool:
    """Whether `model`'s forward takes transformers' `logits_to_keep` (every causal LM there does; a
    PEFT wrapper passes it on to the one it wraps; a hand-written module may not)."""
    inner = _base(model)
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


@torch.no_grad()
def map_forward(model, encoded: list[dict], pad_id: int, batch_size: int,
                per_batch: Callable[[torch.Tensor, dict], list], label: str = "scoring") -> list:
    """One result per encoded sequence ({"input_ids", "labels"}), in input order.

    Sequences go through `model` in length-sorted, right-padded batches; `per_batch(logits, batch)`
    turns one batch's logits (and the padded tensors on the model's device) into one result per
    row. Logits are computed from the batch's `labelled_window` on (transformers' `logits_to_keep`),
    and the batch's tensors are cut to the same columns, so position t still predicts label t+1: the
    unembedding skips the prompt prefix, which the labels mask anyway."""
    order = by_length([len(e["input_ids"]) for e in encoded])
    out: list = [None] * len(encoded)
    device = next(model.parameters()).device
    windowed = keeps_logits(model)
    with progress.track(label, len(order), "sequences") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad([encoded[i] for i in chunk], pad_id).items()}
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            first = labelled_window(batch["labels"]) if windowed else 0
            if first:
                inputs["logits_to_keep"] = torch.arange(first, batch["input_ids"].shape[1], device=device)
                batch = {k: v[:, first:] if v.dim() == 2 else v for k, v in batch.items()}
            logits = model(**inputs).logits
            for i, result in zip(chunk, per_batch(logits, batch), strict=True):
                out[i] = result
            bar.advance(len(chunk))
    return out


def kv_cache(model) -> str | None:
    """transformers' static KV cache where the architecture supports it (`_can_compile_fullgraph`),
    else its default (dynamic). A dynamic cache grows by concatenation, copying every layer's keys and
    values at each new token; the static one is allocated once (prompt + max_new_tokens) and written
    in place. Measured on the 1.3M-parameter Llama of benchmarks/openunlearning.py, 1,017 TOFU
    questions x 200 new tokens, 128 per batch, 2 idle CPU cores: 11.3 s dynamic, 8.2 s static,
    identical generations (tests/test_smollm2.py checks the same on SmolLM2)."""
    return "static" if getattr(model, "_can_compile_fullgraph", False) else None


EAGER_SCORES_BYTES = 256 * 2**20  # the most memory eager's prefill may take for one batch's attention scores


def decode_attention(model, rows: int, prompt_len: int, max_new_tokens: int) -> str | None:
    """The attention implementation for generating `rows` prompts of `prompt_len` tokens when it is
    not the model's own: eager, for a model on the CPU with SDPA and as many KV heads as query heads,
    as long as the prefill's score matrices (rows x heads x prompt x cache, float32) stay within
    EAGER_SCORES_BYTES (eager materialises them; SDPA does not). One query per step is a matrix-vector
    product, which SDPA's CPU kernel does slower than eager's batched matmuls; with grouped KV heads
    eager copies the whole cache to every query head each step instead. Measured on 2 idle cores,
    128 prompts x 200 greedy tokens, static cache: the 4-head Llama of benchmarks/openunlearning.py
    1.28 s eager, 1.45 s SDPA (its whole `tru eval`, median of 3: 16.4 s and 17.5 s, identical logs); Llamas with
    8 heads of 64 (hidden 512) and 9 of 64 (hidden 576) 3-5% faster eager; grouped heads slower
    eager (2 of 4 heads: 0.77 s against 0.57 s; SmolLM2's 3 of 9: 39.7 s against 29-31 s)."""
    inner = _base(model)
    config = getattr(inner, "config", None)
    if (config is None or not hasattr(inner, "set_attn_implementation")
            or getattr(config, "_attn_implementation", None) != "sdpa"
            or next(inner.parameters()).device.type != "cpu"):
        return None
    heads = getattr(config, "num_attention_heads", None)
    if not heads or getattr(config, "num_key_value_heads", heads) != heads:
        return None
    scores = rows * heads * prompt_len * (prompt_len + max_new_tokens) * 4
    return "eager" if scores <= EAGER_SCORES_BYTES else None


@contextmanager
def attention(model, implementation: str | None):
    """`model` with `implementation` as its attention inside the block (None: unchanged), restored after."""
    if implementation is None:
        yield
        return
    inner = _base(model)
    own = inner.config._attn_implementation
    inner.set_attn_implementation(implementation)
    try:
        yield
    finally:
        inner.set_attn_implementation(own)


@torch.no_grad()
def generate(model, tok, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
             label: str = "generating", **sampling) -> list[tuple[str, int]]:
    """(generation, its token count) per prompt, special tokens stripped: left-padded batches sorted
    by prompt length, each row stopping at EOS; `sampling` goes to `generate` (do_sample, ...)."""
    order = by_length([len(p) for p in prompts])
    out: list[tuple[str, int]] = [("", 0)] * len(prompts)
    device = next(model.parameters()).device
    cache = kv_cache(model)
    with progress.track(label, len(order), "answers") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(chunk):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            with attention(model, decode_attention(model, len(chunk), width, max_new_tokens)):
                generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                           max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                           eos_token_id=tok.eos_token_id, cache_implementation=cache, **sampling)
            for row, i in enumerate(chunk):
                new = generated[row, width:]
                count = int((new != tok.pad_token_id).sum()) if tok.pad_token_id is not None else len(new)
                out[i] = (tok.decode(new, skip_special_tokens=True).strip(), count)
            bar.advance(len(chunk))
    return out
