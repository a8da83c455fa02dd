"""The in-context attack: `attack.shots` other forget items (same author first) with their answers
as earlier turns (or earlier passages, or solved questions of a multiple-choice set)."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack


def run(ctx, acfg):
    k = int(acfg.shots)
    return prompt_attack(ctx, "icl", lambda i, r: {"history": prompts.icl_shots(ctx.rows, i, k)})
