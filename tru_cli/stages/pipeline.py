"""tru pipeline: finetune (target, retain) -> eval retain -> generate-targets -> unlearn ->
eval target and unlearned. Every stage goes through the store, so a stage whose configuration has
not changed is reused, by a rerun as much as by the other jobs of a sweep."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from tru_cli import artifacts
from tru_cli.metrics import judge as judge_metrics

log = logging.getLogger("tru")


def _copy_logs(src: str, run_dir: Path, role: str) -> Path:
    dest = run_dir / "logs" / role
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


def run(cfg: DictConfig, recorder) -> None:
    run_dir = recorder.run_dir
    target = artifacts.finetuned(cfg, "full")
    retain = artifacts.finetuned(cfg, "retain")
    recorder.add_artifact("target_model", target)
    recorder.add_artifact("retain_model", retain)
    for role, model in (("target", target), ("retain", retain)):
        recorder.add_metrics(artifacts.producer_metrics(model), prefix=f"{role}/")

    retain_logs, retain_metrics = artifacts.evaluation(cfg, retain, None, self_reference=True)
    recorder.add_metrics(retain_metrics, prefix="retain/")
    _copy_logs(retain_logs, run_dir, "retain")

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
    recorder.add_artifact("retain_logs", run_dir / "logs" / "retain")
    if cfg.judge.backend:  # the paper's UQ/RQ of the unlearned model's answers
        judged = artifacts.judge(cfg, run_dir / "logs" / "unlearned", unlearned)
        recorder.add_metrics(judged, prefix="unlearned/")
    _summary(recorder.metrics)
    if cfg.judge.backend:
        judge_metrics.require_complete(cfg, judged)


def _summary(metrics: dict) -> None:
    names = ["tofu/forget_rougeL_recall", "tofu/retain_rougeL_recall", "tofu/forget_truth_ratio",
             "tofu/forget_quality", "tofu/model_utility", "judge/uq", "judge/rq"]
    names = [n for n in names if any(metrics.get(f"{r}/{n}") is not None for r in ("target", "retain", "unlearned"))]
    table = Table(title="pipeline: target vs retain vs unlearned")
    table.add_column("metric")
    for role in ("target", "retain", "unlearned"):
        table.add_column(role, justify="right")
    for name in names:
        cells = [metrics.get(f"{role}/{name}") for role in ("target", "retain", "unlearned")]
        table.add_row(name, *("-" if c is None else f"{c:.4g}" for c in cells))
    Console().print(table)
