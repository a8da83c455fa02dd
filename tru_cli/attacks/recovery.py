"""The fraction of the forgetting an attack undid."""

from __future__ import annotations


def recovery(attacked: float, unlearned: float, original: float, eps: float = 1e-9) -> float | None:
    """(m_attacked - m_unlearned) / (m_original - m_unlearned): 0 = nothing recovered, 1 = back to the
    original model, negative = the attack made the model forget more. None when unlearning changed
    nothing (the denominator is ~0), since any recovery ratio would then be meaningless."""
    gap = original - unlearned
    if abs(gap) < eps:
        return None
    return (attacked - unlearned) / gap
