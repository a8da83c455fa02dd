"""tru attack: attack an unlearned model, re-evaluate the forget set, and report how much of the
forgetting came back: recovery = (m_attacked - m_unlearned) / (m_original - m_unlearned), with
m = the forget items' main metric: ROUGE-L recall of greedy answers to QA items, ROUGE-L F1 of
passage continuations (MUSE VerbMem), accuracy on multiple-choice questions (WMDP); attacks/probes.py.

Weight attacks (relearn, quantize) change a copy of the unlearned model; prompt attacks (translate,
jailbreak, paraphrase, prefill, icl) change the questions. m_unlearned and m_original are the plain
evaluations of the two models on the same items as the attacked one (attacks/)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from tru_cli import artifacts
from tru_cli.attacks import ATTACKS, probes, quantize
from tru_cli.attacks.context import Context, attack_items
from tru_cli.data.files import write_jsonl
from tru_cli.errors import TruError
from tru_cli.metrics import judge as judge_metrics

log = logging.getLogger("tru")


def run(cfg: DictConfig, recorder) -> None:
    acfg = cfg.attack
    names = list(acfg.suite) if acfg.name == "suite" else [acfg.name]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise TruError(f"attack.suite has {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    # a benchmark or an item kind an attack cannot take fails now, before any model loads
    probe = probes.of(attack_items(cfg)[0])
    probes.check(names, probe, cfg.benchmark.name)
    if "quantize" in names:  # fail before loading anything
        quantize.check(acfg if acfg.name == "quantize" else acfg.settings.quantize, cfg.device.accelerator == "cuda")
    if cfg.model.path is None:  # the run's own target, unlearned through the store
        original = artifacts.target_model(cfg)
        unlearned = artifacts.unlearned(cfg, original, artifacts.targets(cfg) if cfg.method.use_targets else None)[0]
    else:  # the user's unlearned model; preflight made sure attack.reference_model names its original
        unlearned, original = cfg.model.path, None
    original = acfg.reference_model or original
    recorder.add_artifact("unlearned_model", unlearned)
    recorder.add_artifact("reference_model", original)
    ctx = Context(cfg, str(unlearned), str(original))
    logs_dir = recorder.run_dir / "logs"
    judged = bool(cfg.judge.backend) and probe.free_text
    if cfg.judge.backend and not judged:
        log.warning("attack: the judge reads free-text answers; %s items are answered with an option, so the "
                    "attacks report %s recovery without judge/uq", probe.kind, probe.main)
    plain_uq = _judged_uq(cfg, ctx, [{"id": r.get("id"), "question": r["question"], "generation": p["generation"]}
                                     for r, p in zip(ctx.rows, ctx.plain["unlearned"], strict=True)],
                          logs_dir, "judge_unattacked", recorder) if judged else None
    for name in names:
        sub = acfg if acfg.name != "suite" else acfg.settings[name]
        log.info("attack %s", name)
        metrics, logs = ATTACKS[name](ctx, sub)
        recorder.add_metrics({k: v for k, v in metrics.items() if v is not None})
        write_jsonl(logs_dir / f"attack_{name}.jsonl", logs)
        if judged:  # the paper's robustness figure: UQ of the attacked answers, and its drop
            variants = _variants(logs)
            scores = []
            for suffix, rows in variants.items():  # each language (template) judged on its own
                uq = _judged_uq(cfg, ctx, rows, logs_dir, f"judge_attack_{name}{suffix}", recorder)
                scores.append(uq)
                _add_uq(recorder, f"attack/{name}{suffix}", uq, plain_uq)
            if "" not in variants:  # the attack's UQ: its variants weighed alike (one language: its own)
                known = [x for x in scores if x is not None]
                _add_uq(recorder, f"attack/{name}", sum(known) / len(known) if known else None, plain_uq)
    recorder.add_metrics(ctx.usage)
    recorder.add_artifact("logs", recorder.run_dir / "logs")
    _table(recorder.metrics, names, probe.main)


def _variants(logs: list[dict]) -> dict[str, list[dict]]:
    """The attacked answers by variant: {"_es": rows, "_ru": rows} for the translation attack's
    languages, {"_role_play": ...} for jailbreak templates, {"": logs} for an attack without variants.
    Judged apart, so judge.max_items takes the first items of every language, not of the first one."""
    key = next((k for k in ("language", "template") if logs and all(k in row for row in logs)), None)
    if key is None:
        return {"": logs}
    out: dict[str, list[dict]] = {}
    for row in logs:
        out.setdefault(f"_{row[key]}", []).append(row)
    return out


def _add_uq(recorder, prefix: str, uq: float | None, plain_uq: float | None) -> None:
    recorder.add_metrics({f"{prefix}/judge_uq": uq, f"{prefix}/unlearned_judge_uq": plain_uq,
                          f"{prefix}/judge_uq_drop": None if uq is None or plain_uq is None else plain_uq - uq})


def _judged_uq(cfg: DictConfig, ctx: Context, rows: list[dict], log_dir, label: str, recorder) -> float | None:
    """The judge's UQ of the unlearned model's answers in `rows` (the forget question as asked before
    the attack, and the answer the attacked prompt or weights drew), through the judge's cache."""
    metrics = judge_metrics.judge(cfg, {"forget": rows}, log_dir, ctx.unlearned_path, rubrics=("uq",), label=label)
    recorder.add_metrics({f"{label}/{k.split('/', 1)[1]}": v for k, v in metrics.items()
                          if k.startswith("judge/") and k != "judge/uq"})
    recorder.add_metrics({k: (recorder.metrics.get(k) or 0) + v for k, v in metrics.items()  # summed over calls
                          if k.startswith("judge_calls/") and v is not None})
    judge_metrics.require_complete(cfg, metrics)
    return metrics.get("judge/uq")


def _table(metrics: dict, names: list[str], main: str) -> None:
    table = Table(title=f"attacks: forget {main} and recovery of the forgetting")
    for col in ("attack", "unlearned", "attacked", "original", "recovery"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for name in names:
        cells = [metrics.get(f"attack/{name}/{k}") for k in
                 (f"unlearned_forget_{main}", f"forget_{main}", f"original_forget_{main}", "recovery")]
        table.add_row(name, *("-" if c is None else f"{c:.3f}" for c in cells))
    Console().print(table)
