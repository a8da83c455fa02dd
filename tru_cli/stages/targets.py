"""tru generate-targets: a reasoning trace and an explained refusal per forget item -> targets.jsonl."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli import artifacts


def run(cfg: DictConfig, recorder) -> None:
    path = recorder.run_dir / "targets.jsonl"
    recorder.add_metrics(artifacts.build_targets(cfg, path))
    recorder.add_artifact("targets", path)
