"""tru unlearn: TRU (CE on reasoning targets + alpha * GradDiff) or a baseline, on the forget split."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli import artifacts, benchmarks, distributed
from tru_cli.methods import unlearn


def run(cfg: DictConfig, recorder) -> None:
    if cfg.unlearn.get("plan_only") or cfg.device.accelerator == "cuda":
        recorder.add_metrics(unlearn.memory_plan(cfg))
        if cfg.unlearn.get("plan_only"):
            return
    benchmarks.of(cfg.benchmark).forget_rows(cfg.benchmark)  # absent forget data fails now, not after a finetune
    model_path = artifacts.target_model(cfg)
    targets_path = cfg.unlearn.targets
    if targets_path is None and cfg.method.use_targets:
        targets_path = artifacts.targets(cfg)
    metrics = artifacts.build_unlearned(cfg, model_path, targets_path, recorder.run_dir,
                                        on_log=lambda row: recorder.log_step(row, "unlearn"))
    recorder.add_metrics(metrics)
    recorder.add_artifact("model", recorder.run_dir / "model")
    recorder.add_artifact("train_log", recorder.run_dir / "train_log.jsonl")
    if targets_path:
        recorder.add_artifact("targets", targets_path)
    if cfg.unlearn.evaluate and distributed.is_main():  # once, on the main process
        retain = cfg.eval.retain_logs or artifacts.default_retain_logs(cfg)
        recorder.add_metrics(benchmarks.evaluate(cfg, str(recorder.run_dir / "model"), recorder.run_dir, retain))
        recorder.add_artifact("logs", recorder.run_dir / "logs")
