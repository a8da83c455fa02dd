"""tru eval: the benchmark's metrics with per-item logs (and the LLM judge's UQ/RQ), or TOFU-format
logs re-aggregated without a model."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli import artifacts, benchmarks
from tru_cli.metrics import judge as judge_metrics


def run(cfg: DictConfig, recorder) -> None:
    model_path = None
    if cfg.eval.from_logs:
        metrics = benchmarks.of(cfg.benchmark).from_logs(cfg.eval.from_logs, cfg.eval.retain_logs,
                                                         recorder.run_dir / "logs")
    else:
        retain = cfg.eval.retain_logs or artifacts.default_retain_logs(cfg)
        model_path = artifacts.target_model(cfg)
        metrics = benchmarks.evaluate(cfg, model_path, recorder.run_dir, retain)
        recorder.add_artifact("model", model_path)
    recorder.add_metrics(metrics)  # recorded before the judge runs: a judge failure keeps them
    if cfg.judge.backend:
        metrics = artifacts.judge(cfg, recorder.run_dir / "logs", model_path)
        recorder.add_metrics(metrics)
    if cfg.eval.from_logs or cfg.judge.backend:
        benchmarks.show(metrics)
    if cfg.judge.backend:
        judge_metrics.require_complete(cfg, metrics)
    recorder.add_artifact("logs", recorder.run_dir / "logs")
