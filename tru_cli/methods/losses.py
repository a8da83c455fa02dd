"""Unlearning losses as plain functions of per-batch NLLs, importable without the trainer.

Each term is a negative log-likelihood over answer tokens (prompt and padding masked), reduced in
one of two ways (`method.reduction`):
- `sequence`: the summed NLL of each sequence, averaged over the batch. This is TRU's Eq. 2-4 as
  written (sequence log-probabilities), and it weights every token of a long reasoning target as
  much as every token of a short forget answer, so alpha means "GA counts 0.1 per token".
- `token`: the mean over all answer tokens of the batch (transformers' causal-LM loss, and
  OpenUnlearning's GradDiff). With it a 100-token target and a 15-token forget answer get the same
  total weight, which makes the GA term about 7x stronger per token than the paper's formula; on the
  embedded default this let GA's push on unused tokens win (measured: junk first tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed NLL and answer-token count. logits [B, T, V], labels [B, T] (-100 masked);
    position t predicts label t+1."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    nll = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                          shift_labels.clamp(min=0).reshape(-1), reduction="none")
    nll = nll.view_as(shift_labels) * mask
    return nll.sum(dim=1), mask.sum(dim=1)


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over all answer tokens of the batch (tokens pooled across rows)."""
    total, count = token_nll(logits, labels)
    return total.sum() / count.sum().clamp(min=1)


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sequence's summed answer NLL (-log P(answer | prompt))."""
    total, _ = token_nll(logits, labels)
    return total.mean()


REDUCTIONS = {"token": mean_nll, "sequence": sequence_nll}


def ga_loss(forget_nll: torch.Tensor) -> torch.Tensor:
    """Gradient ascent (Jang et al. 2023; TOFU's GA): L = -NLL(forget) = mean log P(forget answers)."""
    return -forget_nll


def graddiff_loss(forget_nll: torch.Tensor, retain_nll: torch.Tensor,
                  lambda_retain: float = 1.0) -> torch.Tensor:
    """GradDiff (Liu et al. 2022; TRU Eq. 2): L = -NLL(forget) + lambda * NLL(retain)."""
    return -forget_nll + lambda_retain * retain_nll


GA_TERMS = {
    "graddiff": lambda parts, m: graddiff_loss(parts["forget"], parts["retain"], m.lambda_retain),
    "ga": lambda parts, m: ga_loss(parts["forget"]),
}


def tru_loss(target_nll: torch.Tensor, ga_term: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """TRU (Liao et al. 2026, Eq. 4): L = CE(reasoning ⊕ refusal | query) + alpha * L_GA-based.
    `target_nll` is the CE on the generated targets; `ga_term` is e.g. `graddiff_loss(...)`."""
    return target_nll + alpha * ga_term


def method_loss(method, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The configured method's loss from the NLLs of its sub-batches (`target`, `forget`, `retain`)."""
    if method.ga_term not in GA_TERMS:
        raise ValueError(f"method.ga_term={method.ga_term}; choose one of {', '.join(GA_TERMS)}")
    ga = GA_TERMS[method.ga_term](parts, method)
    if method.loss == "tru":
        target = parts["target"] if method.use_targets else torch.zeros_like(ga)
        return tru_loss(target, ga, method.alpha)
    if method.loss == "graddiff":
        return method.alpha * ga
    raise ValueError(f"method.loss={method.loss} is not known; choose tru or graddiff")


def needed_parts(method) -> tuple[str, ...]:
    """Which sub-batches the method reads, so the trainer never computes an unused forward pass."""
    parts = ["forget"]
    if method.ga_term == "graddiff":
        parts.append("retain")
    if method.loss == "tru" and method.use_targets:
        parts.insert(0, "target")
    return tuple(parts)
