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


def tru_loss(target_nll: torch.Tensor, ga_term: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """TRU (Liao et al. 2026, Eq. 4): L = CE(reasoning ⊕ refusal | query) + alpha * L_GA-based.
    `target_nll` is the CE on the generated targets; `ga_term` is e.g. `graddiff_loss(...)`.
    Every method is this shape (objectives.py): baselines pass a zero target term."""
    return target_nll + alpha * ga_term


# ---- baselines: each takes per-sequence or per-token statistics, not a model ----

def npo_loss(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO (Zhang et al. 2024, TRU Eq. 6): (2/beta) * log(1 + (P_theta/P_ref)^beta)
    = -(2/beta) * log sigmoid(beta * (NLL_theta - NLL_ref)), averaged over sequences.
    `nll`, `ref_nll`: summed answer NLL per sequence [B] under the model and the reference."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - ref_nll)).mean()


def simnpo_loss(avg_nll: torch.Tensor, beta: float = 4.5, delta: float = 0.0) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): reference-free NPO on the length-normalised NLL,
    -(2/beta) * log sigmoid(beta * (NLL_theta / |y| - delta)). `avg_nll`: mean token NLL per sequence [B]."""
    return -(2.0 / beta) * F.logsigmoid(beta * (avg_nll - delta)).mean()


def dpo_loss(win_nll: torch.Tensor, win_ref_nll: torch.Tensor, lose_nll: torch.Tensor,
             lose_ref_nll: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """DPO (Rafailov et al. 2023) as IdkDPO uses it (TOFU; OpenUnlearning): the "I don't know"
    answer wins over the original answer. With log-ratios r = log P_theta - log P_ref = NLL_ref - NLL_theta,
    L = -(2/beta) * log sigmoid(beta * (r_win - r_lose)). All inputs: summed NLL per sequence [B]."""
    win = win_ref_nll - win_nll
    lose = lose_ref_nll - lose_nll
    return -(2.0 / beta) * F.logsigmoid(beta * (win - lose)).mean()


def wga_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """WGA (Wang et al. 2025, TRU Eq. 7): gradient ascent with each answer token weighted by its
    own (detached) probability to the power beta: L = -mean_t[ p_t^beta * CE_t ]."""
    shift_logits, shift_labels = logits[:, :-1, :].float(), labels[:, 1:]
    mask = shift_labels != IGNORE
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                         shift_labels.clamp(min=0).reshape(-1), reduction="none").view_as(shift_labels)
    weight = torch.exp(-ce).detach() ** beta
    return -(weight * ce)[mask].mean()


def kl_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(P_ref || P_theta) of the next-token distributions, averaged over answer tokens
    (the KL retain term of Yao et al. 2023 / OpenUnlearning; OpenUnlearning averages over all
    positions, tru over answer positions only, like every other term here)."""
    mask = labels[:, 1:] != IGNORE
    log_p = F.log_softmax(logits[:, :-1, :].float(), dim=-1)[mask]
    log_ref = F.log_softmax(ref_logits[:, :-1, :].float(), dim=-1)[mask]
    return F.kl_div(log_p, log_ref, reduction="batchmean", log_target=True)


def rmu_loss(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU (Li et al. 2024, TRU Eq. 9), one term: the mean squared distance (over hidden units)
    between layer activations [B, T, H] and `target` ([H] control vector c*u for the forget term, or
    the frozen model's activations [B, T, H] for the retain term), averaged over each sequence's
    masked tokens and then over the sequences, as the WMDP code and OpenUnlearning pool it (a long
    sequence weighs as much as a short one)."""
    sq = (hidden.float() - target.float()) ** 2
    per_token = sq.mean(dim=-1) * mask.float()
    tokens = mask.float().sum(dim=-1)
    kept = tokens > 0  # a sequence without labelled tokens has nothing to pool
    return (per_token.sum(dim=-1)[kept] / tokens[kept]).mean()
