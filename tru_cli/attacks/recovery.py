"""How much of the forgetting an attack undid: recovery = (m_attacked - m_unlearned) /
(m_original - m_unlearned) for each forget metric, and the attack/<name>/... rows of results.json."""

from __future__ import annotations

# Forget metrics per item of a QA set, and the name of each one's recovery (`recovery` is the main
# metric's); other kinds of items have their own (attacks/probes.py).
FORGET_METRICS = {"rougeL_recall": "recovery", "prob": "forget_prob_recovery"}


def recovery(attacked: float, unlearned: float, original: float, eps: float = 1e-9) -> float | None:
    """(m_attacked - m_unlearned) / (m_original - m_unlearned): 0 = nothing recovered, 1 = back to the
    original model, negative = the attack made the model forget more. None when unlearning changed
    nothing (the denominator is ~0), since any recovery ratio would then be meaningless."""
    gap = original - unlearned
    if abs(gap) < eps:
        return None
    return (attacked - unlearned) / gap


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def item_logs(rows: list[dict], attacked: list[dict], **extra) -> list[dict]:
    """Per-item log rows: the item, the attacked generation and its scores."""
    return [{"id": r.get("id"), "question": r["question"], "answer": r["answer"], **extra, **a}
            for r, a in zip(rows, attacked, strict=True)]


def summarize(plain: dict[str, list[dict]], name: str, attacked: list[dict], index: list[int],
              extra: dict | None = None, forget_metrics: dict = FORGET_METRICS) -> dict:
    """attack/<name>/... metrics over the attacked items `index` (positions in the forget rows),
    against the plain per-item scores of the `unlearned` and `original` models."""
    out = {}
    for metric, recovery_name in forget_metrics.items():
        m_att = mean([a[metric] for a in attacked])
        m_unl = mean([plain["unlearned"][i][metric] for i in index])
        m_orig = mean([plain["original"][i][metric] for i in index])
        out.update({f"attack/{name}/forget_{metric}": m_att,
                    f"attack/{name}/unlearned_forget_{metric}": m_unl,
                    f"attack/{name}/original_forget_{metric}": m_orig,
                    f"attack/{name}/{recovery_name}": recovery(m_att, m_unl, m_orig)})
    for key, value in (extra or {}).items():
        out[f"attack/{name}/{key}"] = value
    return out


def aggregate(metrics: dict, name: str, parts: list[str], forget_metrics: dict = FORGET_METRICS) -> dict:
    """attack/<name>/... as the mean over its sub-attacks (languages, templates) of each metric."""
    out = {}
    for metric, recovery_name in forget_metrics.items():
        values = {kind: mean([metrics[f"attack/{p}/{kind}forget_{metric}"] for p in parts])
                  for kind in ("", "unlearned_", "original_")}
        out.update({f"attack/{name}/{kind}forget_{metric}": v for kind, v in values.items()})
        out[f"attack/{name}/{recovery_name}"] = recovery(values[""], values["unlearned_"], values["original_"])
    return out
