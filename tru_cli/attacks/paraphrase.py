"""The paraphrase attack: each forget question asked in other words (the benchmark's
`paraphrased_question`, or the generator's rewrite)."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack, rewritten


def run(ctx, acfg):
    questions = rewritten(ctx, acfg, "paraphrase", "paraphrased_question", prompts.PARAPHRASE)
    metrics, logs = prompt_attack(ctx, "paraphrase", lambda i, r: {"question": questions[i]})
    return metrics, [{**row, "attacked_question": q} for row, q in zip(logs, questions, strict=True)]
