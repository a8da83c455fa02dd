"""The translation attack: each forget question asked in `attack.languages` (the benchmark's
`question_<lang>`, or the generator's translation); the attack's row is the mean over languages."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack, rewritten
from tru_cli.attacks.recovery import aggregate


def run(ctx, acfg):
    metrics, logs = {}, []
    for lang in acfg.languages:
        questions = rewritten(ctx, acfg, "translate", f"question_{lang}", prompts.translation(lang))
        m, lg = prompt_attack(ctx, f"translate_{lang}", lambda i, r, q=questions: ctx.fmt.prompt_ids(q[i]))
        metrics.update(m)
        logs += [{**row, "language": lang, "attacked_question": q} for row, q in zip(lg, questions, strict=True)]
    return {**metrics, **aggregate(metrics, "translate", [f"translate_{lang}" for lang in acfg.languages])}, logs
