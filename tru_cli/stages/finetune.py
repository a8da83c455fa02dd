"""tru finetune: teach a model the benchmark (target model on `full`, retain model on the retain split)."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli import artifacts


def run(cfg: DictConfig, recorder) -> None:
    metrics = artifacts.build_finetuned(cfg, cfg.finetune.split, recorder.run_dir,
                                        on_log=lambda row: recorder.log_step(row, "finetune"))
    recorder.add_metrics(metrics)
    recorder.add_artifact("model", recorder.run_dir / "model")
    recorder.add_artifact("train_log", recorder.run_dir / "train_log.jsonl")
