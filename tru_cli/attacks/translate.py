"""The translation attack: each forget question asked in `attack.languages` (the benchmark's
`question_<lang>`, or the generator's translation); the attack's row is the mean over languages.

A model that leaks in Russian answers in Cyrillic: its answer is scored against the gold answer
brought into the same language by the same route (`answer_<lang>`, or the generator), with ROUGE
over words of any script (rouge_score's own tokenizer keeps only a-z and 0-9, so a fully leaking
Russian answer scores 0, or only its digits: 0.11 in the issue's example). Without a translating route the English answer is the reference."""

from __future__ import annotations

import logging

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack, rewritten
from tru_cli.attacks.recovery import aggregate
from tru_cli.backends import CHAT_BACKENDS

log = logging.getLogger("tru")


def references(ctx, acfg, lang: str) -> list[str] | None:
    """The gold answers in `lang`, by the route the questions took; the English ones when none
    exists; None for items whose answer is an option, not text."""
    if not ctx.probe.free_text:
        return None
    field = f"answer_{lang}"
    if all(r.get(field) for r in ctx.rows) or ctx.cfg.generator.backend in CHAT_BACKENDS:
        return rewritten(ctx, acfg, "translate", field, prompts.translation(lang, "text"), text="answer")
    log.warning("attack=translate: no %s answers and generator=%s cannot translate: the %s answers are "
                "scored against the English ones", lang, ctx.cfg.generator.name, lang)
    return [r["answer"] for r in ctx.rows]


def run(ctx, acfg):
    metrics, logs = {}, []
    for lang in acfg.languages:
        questions = rewritten(ctx, acfg, "translate", f"question_{lang}", prompts.translation(lang))
        golds = references(ctx, acfg, lang)
        m, lg = prompt_attack(ctx, f"translate_{lang}", lambda i, r, q=questions, g=golds: {
            "question": q[i], **({"answer": g[i]} if g else {})}, unicode=True)
        metrics.update(m)
        logs += [{**row, "language": lang, "attacked_question": q, **({"reference": golds[i]} if golds else {})}
                 for i, (row, q) in enumerate(zip(lg, questions, strict=True))]
    parts = [f"translate_{lang}" for lang in acfg.languages]
    return {**metrics, **aggregate(metrics, "translate", parts, ctx.probe.metrics)}, logs
