"""Membership inference as MUSE's PrivLeak does it (swj0419/muse_bench, metrics/privleak.py).

- token log-probs: the text is tokenised with the tokenizer's own special tokens (MUSE's
  `tokenizer.encode(text)`, so BOS for Llama), and every token after the first gets
  log p(token | prefix) under teacher forcing.
- Min-K% Prob (Shi et al. 2024): the mean of the k*T lowest token log-probs, negated, with the
  count rounded DOWN (`int(T * k)`, no minimum of one: MUSE's value for a text of under 1/k
  scored tokens is NaN). A loss-like score: higher = the model finds the text less likely.
- AUC: MUSE runs sklearn's `roc_curve(y, -score)` with the forget texts labelled 0 and the
  holdout texts labelled 1, i.e. AUC = P(score(forget) > score(holdout)) + P(tie) / 2. A model
  that memorised the forget set scores them LOW, so its AUC is near 0; a model that never saw
  them gives about 0.5 (MUSE's retrained models: News 0.4772, Books 0.5393).
- PrivLeak = (AUC - AUC_retrain) / AUC_retrain * 100, in percent: 0 = leaks like the retrained
  model (best); near -100 = the forget set is still recognisably member (MUSE's News target
  model: -99.8, under-unlearned); large positive = over-unlearned (the forget set now looks
  LESS familiar than unseen text, itself a membership signal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tru_cli.models import batching

# AUC of MUSE's retrained models for `forget_holdout_Min-40%`, the key MUSE's eval.py reports;
# exact literals of swj0419/muse_bench constants.py (AUC_RETRAIN, lines 62 and 163).
AUC_RETRAIN = {"news": 0.47719999999999996, "books": 0.5392999999999999}
MIN_K = 0.4  # MUSE's PrivLeak uses Min-40%


def token_logprobs(model, tok, texts: list[str], batch_size: int, max_length: int) -> list[np.ndarray]:
    """log p(token_t | tokens_<t) for t = 1..T-1 of each text (T <= max_length tokens, special
    tokens included as the tokenizer adds them), in length-sorted, right-padded batches."""
    encoded = [tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
               for t in texts]
    pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)

    def per_batch(logits, batch):
        out = []
        for row, n in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
            if n < 2:  # nothing after the first token to score
                out.append(np.zeros(0))
                continue
            # One row at a time in float32: MUSE takes log_softmax in the model's dtype, which
            # only differs in rounding, and a whole bf16 batch upcast at once would not fit.
            logp = torch.log_softmax(logits[row, :n - 1].float(), dim=-1)
            ids = batch["input_ids"][row, 1:n, None]
            out.append(logp.gather(-1, ids).squeeze(-1).cpu().numpy().astype(np.float64))
        return out

    scored = [i for i, ids in enumerate(encoded) if ids]  # an empty encoding has nothing to run
    out = [np.zeros(0)] * len(encoded)
    results = batching.map_forward(model, [{"input_ids": encoded[i], "labels": encoded[i]} for i in scored],
                                   pad_id, batch_size, per_batch)
    for i, result in zip(scored, results, strict=True):
        out[i] = result
    return out


def min_k(logprobs: np.ndarray, k: float = MIN_K) -> float:
    """Min-K% Prob score: -mean of the int(T * k) lowest token log-probs (NaN when that is 0)."""
    values = np.sort(np.asarray(logprobs, dtype=np.float64))
    count = int(len(values) * k)  # MUSE rounds down and has no floor of 1 (OpenUnlearning does)
    if count == 0:
        return float("nan")  # MUSE: np.mean of an empty slice
    return float(-np.mean(values[:count]))


def forget_holdout_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """MUSE's `forget_holdout` AUC of loss-like scores (Min-K%): P(forget > holdout) + ties / 2.

    Equal to sklearn's roc_curve(y, -score) + auc with forget = 0 and holdout = 1, ties
    included, via the Mann-Whitney U statistic of the forget scores: AUC = U / (n_f * n_h).
    """
    forget = np.asarray(forget_scores, dtype=np.float64)
    holdout = np.asarray(holdout_scores, dtype=np.float64)
    if not len(forget) or not len(holdout):
        raise ValueError("AUC needs at least one forget and one holdout score")
    if np.isnan(forget).any() or np.isnan(holdout).any():
        # sklearn (and so MUSE) refuses NaN scores too; here they come from texts too short for Min-K.
        raise ValueError("NaN membership score (a text with fewer than 1/k scored tokens?)")
    from scipy.stats import (
        mannwhitneyu,  # deferred: scipy.stats takes 0.2 s; training imports this module (via metrics.tofu)
    )

    u = mannwhitneyu(forget, holdout, alternative="two-sided").statistic
    return float(u / (len(forget) * len(holdout)))


def privleak(auc: float, auc_retrain: float) -> float:
    """MUSE's PrivLeak in percent: (AUC - AUC_retrain) / AUC_retrain * 100."""
    return (auc - auc_retrain) / auc_retrain * 100
