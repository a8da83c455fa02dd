"""The in-context attack: `attack.shots` other forget items (same author first) as earlier turns."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack


def run(ctx, acfg):
    k = int(acfg.shots)
    return prompt_attack(ctx, "icl", lambda i, r: ctx.fmt.prompt_ids(
        r["question"], history=prompts.icl_shots(ctx.rows, i, k)))
