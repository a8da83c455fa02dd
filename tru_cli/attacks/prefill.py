"""The prefill attack: the answer's first `attack.prefill_words` words put in the model's mouth; the
rest of the answer is what it must still produce."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack


def run(ctx, acfg):
    words = int(acfg.prefill_words)
    return prompt_attack(ctx, "prefill",
                         lambda i, r: ctx.fmt.prompt_ids(r["question"], prefill=prompts.split_answer(r["answer"], words)[0]),
                         reference_of=lambda r: prompts.split_answer(r["answer"], words)[1] or r["answer"])
