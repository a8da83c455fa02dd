"""Everything a command's inputs can be checked for before anything heavy loads (no torch here):
the benchmark's local files, local model directories, targets, IDK answers, related text, and the
per-item logs that `eval.from_logs` re-aggregates. The CLI reports these problems together with the
config's own (checks.py) in one line, with exit code 2."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import checks as data_checks
from tru_cli.errors import TruError
from tru_cli.metrics import tofu_logs
from tru_cli.models import checks as model_checks
from tru_cli.models import gguf

TARGET_FIELDS = {"id": str, "reasoning": str, "refusal": str}


def _file_problem(key: str, value, fields: dict | None = None) -> str | None:
    path = Path(str(value))
    if not path.is_file():
        return f"{key}={value} does not exist; give the path of a file"
    return data_checks.check_file(path, fields or {}) if fields is not None else None


def problems(command: str, cfg: DictConfig) -> list[str]:
    found = data_checks.problems(cfg.benchmark)
    if cfg.model.get("path") is not None:
        found += model_checks.problems(cfg.model.path, "model.path")
    elif cfg.model.get("gguf"):
        found += gguf.problems(cfg.model.gguf)
    if cfg.benchmark.get("known"):
        found.append(_file_problem("benchmark.known", cfg.benchmark.known, {"id": str, "known": bool}))
    attack = cfg.get("attack") or {}
    if command == "attack" and cfg.model.get("path") is not None and not attack.get("reference_model"):
        found.append("model.path names the unlearned model to attack; give attack.reference_model=DIR, the "
                     "model before unlearning, so that recovery can be measured")
    if command == "attack" and attack.get("reference_model"):
        found += model_checks.problems(attack.reference_model, "attack.reference_model")
    if command == "attack" and attack.get("data") == "text" and attack.get("text_file"):
        found.append(_file_problem("attack.text_file", attack.text_file, {"text": str}))
    if command in ("unlearn", "attack") and (cfg.get("unlearn") or {}).get("targets"):
        found.append(_file_problem("unlearn.targets", cfg.unlearn.targets, TARGET_FIELDS))
    if cfg.method.get("idk_file"):
        found.append(_file_problem("method.idk_file", cfg.method.idk_file))
    if command == "eval":
        for key in ("from_logs", "retain_logs"):
            value = cfg.eval.get(key)
            if value:
                try:
                    tofu_logs.read_logs(value)
                except TruError as exc:
                    found.append(f"eval.{key}: {exc}")
    return [p for p in found if p]
