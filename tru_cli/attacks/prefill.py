"""The prefill attack: the answer's first `attack.prefill_words` words put in the model's mouth; the
rest of the answer is what it must still produce."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack


def run(ctx, acfg):
    words = int(acfg.prefill_words)
    def rewrite(i, row):
        start, rest = prompts.split_answer(row["answer"], words)
        return {"prefill": start, "answer": rest or row["answer"]}

    return prompt_attack(ctx, "prefill", rewrite)
