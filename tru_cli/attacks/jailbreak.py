"""The jailbreak attack: each forget question wrapped in each of `attack.templates` (attacks/prompts.py);
the attack's row is the mean over templates, and the best template's recovery is reported beside it."""

from __future__ import annotations

from tru_cli.attacks import prompts
from tru_cli.attacks.context import prompt_attack
from tru_cli.attacks.recovery import aggregate
from tru_cli.errors import TruError


def run(ctx, acfg):
    metrics, logs, means = {}, [], {}
    for template in acfg.templates:
        if template not in prompts.JAILBREAKS:
            raise TruError(f"attack.templates has '{template}'; choose from {', '.join(prompts.JAILBREAKS)}")
        text = prompts.JAILBREAKS[template]
        m, lg = prompt_attack(ctx, f"jailbreak_{template}",
                              lambda i, r, text=text: {"question": text.format(question=r["question"])})
        metrics.update(m)
        means[template] = m[f"attack/jailbreak_{template}/forget_{ctx.probe.main}"]
        logs += [{**row, "template": template} for row in lg]
    out = aggregate(metrics, "jailbreak", [f"jailbreak_{t}" for t in acfg.templates], ctx.probe.metrics)
    best = max(means, key=means.get)
    out["attack/jailbreak/best_template_recovery"] = metrics[f"attack/jailbreak_{best}/recovery"]
    return {**metrics, **out}, logs
