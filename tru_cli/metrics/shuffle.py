"""Multiple-choice accuracy under shuffled options (the instability that motivates the paper's LLM
judge): every question asked again with its four options in seeded random orders, the answer index
following its option. Reported per set: the accuracy of each order, their mean and standard
deviation, and `flips`, the fraction of questions answered correctly in some orders and wrongly in
others (0 = the metric does not depend on the order)."""

from __future__ import annotations

import random
import statistics


def permuted(rows: list[dict], seed: int) -> list[dict]:
    """The rows with their options in the order of `seed` (per question), the answer index moved along."""
    out = []
    for i, row in enumerate(rows):
        order = list(range(len(row["choices"])))
        random.Random(f"{seed}:{i}").shuffle(order)
        out.append({**row, "choices": [row["choices"][j] for j in order], "answer": order.index(int(row["answer"]))})
    return out


def summarize(correct_by_seed: dict[int, list[bool]]) -> dict:
    """{acc_<seed>, acc_mean, acc_std, flips} over the seeds' per-question correctness."""
    accs = {seed: sum(c) / len(c) for seed, c in correct_by_seed.items()}
    per_question = list(zip(*correct_by_seed.values(), strict=True))
    flips = sum(len(set(q)) > 1 for q in per_question) / len(per_question)
    return {**{f"acc_seed{seed}": a for seed, a in accs.items()}, "acc_mean": statistics.fmean(accs.values()),
            "acc_std": statistics.pstdev(accs.values()), "flips": flips}
