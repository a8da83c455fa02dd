"""tru pipeline: the target (finetuned, or the published model when the benchmark's knowledge
comes from pretraining) and, where forget quality needs it, the retain model -> eval retain ->
generate-targets -> unlearn -> eval target and unlearned. Every stage goes through the store, so a stage whose configuration has
not changed is reused, by a rerun as much as by the other jobs of a sweep."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from tru_cli import artifacts, benchmarks
from tru_cli.metrics import judge as judge_metrics

log = logging.getLogger("tru")


def _copy_logs(src: str, run_dir: Path, role: str) -> Path:
    dest = run_dir / "logs" / role
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


def run(cfg: DictConfig, recorder) -> None:
    run_dir = recorder.run_dir
    bench = benchmarks.of(cfg.benchmark)
    target = artifacts.target_model(cfg)
    models = {"target": target}
    retain_logs = None
    if bench.USES_RETAIN_LOGS:  # the reference of forget quality: a model that never saw the forget set
        models["retain"] = artifacts.finetuned(cfg, "retain")
    for role, model in models.items():
        recorder.add_artifact(f"{role}_model", model)
        recorder.add_metrics(artifacts.producer_metrics(model), prefix=f"{role}/")
    if "retain" in models:
        retain_logs, retain_metrics = artifacts.evaluation(cfg, models["retain"], None, self_reference=True)
        recorder.add_metrics(retain_metrics, prefix="retain/")
        recorder.add_artifact("retain_logs", _copy_logs(retain_logs, run_dir, "retain"))
    else:  # a published reference model (MUSE's retrained model), when the benchmark names one
        retain_logs = artifacts.reference_logs(cfg)
        if retain_logs:
            recorder.add_artifact("reference_logs", _copy_logs(retain_logs, run_dir, "reference"))

    targets = artifacts.targets(cfg) if cfg.method.use_targets else None
    if targets:
        recorder.add_artifact("targets", targets)
    unlearned, train_metrics = artifacts.unlearned(cfg, target, targets)
    recorder.add_artifact("unlearned_model", unlearned)
    recorder.add_metrics(train_metrics)

    for role, model in (("target", target), ("unlearned", unlearned)):
        logs, metrics = artifacts.evaluation(cfg, model, retain_logs)
        recorder.add_metrics(metrics, prefix=f"{role}/")
        recorder.add_artifact(f"{role}_logs", _copy_logs(logs, run_dir, role))
    if cfg.judge.backend:  # the paper's UQ/RQ of the unlearned model's answers, and of the original's
        judged = {}
        for role, model in (("target", target), ("unlearned", unlearned)):
            judged[role] = artifacts.judge(cfg, run_dir / "logs" / role, model)
            recorder.add_metrics(judged[role], prefix=f"{role}/")
        for score in ("uq", "rq"):  # RQ relative to the original model, as the paper reports it
            before, after = judged["target"].get(f"judge/{score}"), judged["unlearned"].get(f"judge/{score}")
            recorder.add_metrics({f"judge/{score}_change": None if before is None or after is None else after - before})
    _summary(recorder.metrics, bench.HEADLINE)
    if cfg.judge.backend:
        for role_metrics in judged.values():
            judge_metrics.require_complete(cfg, role_metrics)


def _summary(metrics: dict, names: list[str]) -> None:
    roles = ("target", "retain", "unlearned")
    names = [n for n in names if any(metrics.get(f"{r}/{n}") is not None for r in roles)]
    roles = [r for r in roles if any(metrics.get(f"{r}/{n}") is not None for n in names)]
    table = Table(title=f"pipeline: {' vs '.join(roles)}")
    table.add_column("metric")
    for role in roles:
        table.add_column(role, justify="right")
    for name in names:
        cells = [metrics.get(f"{role}/{name}") for role in roles]
        table.add_row(name, *("-" if c is None else f"{c:.4g}" for c in cells))
    Console().print(table)
