"""The inputs a stage needs, found or built once through the store: finetuned target and retain
models, targets, evaluations. `tru pipeline` is these calls in order; `tru unlearn` and `tru eval`
use them to run with no arguments on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli import store

FORMAT_VERSION = 3  # bump when a stage's output format changes, so old store entries are not reused
# Generator settings that change how requests travel, not what the targets are: left out of the key.
TRANSPORT_KEYS = ("base_url", "api_key_env", "timeout", "max_retries", "concurrency", "requests_per_minute",
                  "cache", "price_per_mtok")


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def _bench_key(cfg: DictConfig, keep_splits: tuple[str, ...]) -> dict:
    bench = _plain(cfg.benchmark)
    for key in ("forget_split", "retain_split", "holdout_split", "unlearning_task"):
        if key not in keep_splits:
            bench.pop(key, None)
    return bench


def _model_key(cfg: DictConfig) -> dict:
    model = _plain(cfg.model)
    recipe = model.pop("recipe", {}) or {}
    model["finetune_recipe"] = {k: v for k, v in recipe.items() if k.startswith("finetune")}
    model.pop("tofu_checkpoints", None)
    return model


def _is_local(path) -> bool:
    return path is not None and Path(str(path)).exists()


def finetuned(cfg: DictConfig, role: str) -> str:
    """Path or hub id of the model that learned the benchmark (`full`) or only its retain split."""
    checkpoints = cfg.model.get("tofu_checkpoints")
    if cfg.model.path is not None and cfg.benchmark.format == "tofu" and checkpoints \
            and checkpoints.get(role) and cfg.benchmark.source == "hub":
        return checkpoints.get(role)
    from tru_cli.stages import finetune

    payload = {"v": FORMAT_VERSION, "role": role, "model": _model_key(cfg), "seed": cfg.seed,
               "trainer": _plain(cfg.trainer.finetune), "optim": cfg.trainer.get("optim"),
               "precision": cfg.device.mixed_precision,
               "benchmark": _bench_key(cfg, ("retain_split",) if role == "retain" else ())}
    entry = store.cached(cfg.paths.store, f"finetune-{role}", payload,
                         lambda out: _write_metrics(out, finetune.train(cfg, role, out)))
    return str(entry / "model")


def target_model(cfg: DictConfig) -> str:
    """The model a command works on: model.path when it is a local checkpoint or a backbone with no
    TOFU checkpoint, else the finetuned target (built once for the embedded default)."""
    if cfg.model.path is None:
        return finetuned(cfg, "full")
    if _is_local(cfg.model.path):
        return str(cfg.model.path)
    return finetuned(cfg, "full")


def targets(cfg: DictConfig) -> str:
    from tru_cli.stages import targets as targets_stage

    generator = {k: v for k, v in _plain(cfg.generator).items() if k not in TRANSPORT_KEYS}
    if generator.get("backend") == "hf" and not generator.get("model"):
        generator["model"] = target_model(cfg)  # the run's own model writes them
    payload = {"v": FORMAT_VERSION, "generator": generator,
               "criteria": targets_stage.with_criteria(cfg),
               "benchmark": _bench_key(cfg, ("forget_split", "unlearning_task"))}
    entry = store.cached(cfg.paths.store, "targets", payload,
                         lambda out: _write_metrics(out, targets_stage.generate(cfg, out / "targets.jsonl")))
    return str(entry / "targets.jsonl")


def unlearned(cfg: DictConfig, target: str, targets_path: str | None) -> tuple[str, dict]:
    from tru_cli.stages import unlearn

    payload = {"v": FORMAT_VERSION, "target": target, "targets": targets_path,
               "method": _plain(cfg.method), "trainer": _plain(cfg.trainer.unlearn), "seed": cfg.seed,
               "lora": _plain(cfg.trainer.get("lora")), "optim": cfg.trainer.get("optim"),
               "precision": cfg.device.mixed_precision, "max_length": cfg.model.max_length,
               "prompt_format": cfg.model.prompt_format,
               "benchmark": _bench_key(cfg, ("forget_split", "retain_split"))}
    entry = store.cached(cfg.paths.store, "unlearn", payload,
                         lambda out: _write_metrics(out, unlearn.train(cfg, target, targets_path, out)))
    return str(entry / "model"), _read_metrics(entry)


def evaluation(cfg: DictConfig, model: str, retain_logs: str | None, self_reference: bool = False) -> tuple[str, dict]:
    """Per-item logs dir and metrics of `model` on the benchmark's eval sets."""
    from tru_cli.stages import evaluate

    ev = _plain(cfg.eval)
    for key in ("from_logs", "retain_logs", "show_examples", "batch_size"):
        ev.pop(key, None)
    payload = {"v": FORMAT_VERSION, "model": model, "eval": ev, "retain_logs": retain_logs,
               "self_reference": self_reference, "prompt_format": cfg.model.prompt_format,
               "benchmark": _bench_key(cfg, ("forget_split",))}
    entry = store.cached(cfg.paths.store, "eval", payload, lambda out: _write_metrics(
        out, evaluate.evaluate(cfg, model, out, retain_logs, self_reference=self_reference)))
    return str(entry / "logs"), _read_metrics(entry)


def retain_logs(cfg: DictConfig) -> str:
    """Per-item logs of the retain model (the reference of forget quality), built once."""
    logs, _ = evaluation(cfg, finetuned(cfg, "retain"), None, self_reference=True)
    return logs


def producer_metrics(path: str) -> dict:
    """The training summary of the store entry a model came from (none for a hub id or user dir)."""
    entry = Path(path).parent
    return _read_metrics(entry) if (entry / "DONE").is_file() else {}


def _write_metrics(out: Path, metrics: dict) -> None:
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))


def _read_metrics(entry: Path) -> dict:
    path = Path(entry) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
