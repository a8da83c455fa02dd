"""Checks of a composed config before anything heavy loads: the type and range of every numeric
setting, and that the run and store folders can be written. All problems are reported at once, in
one line, each naming the key, its value and what would fix it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# (key, what it must be); a key absent from the config is skipped, and "or null" lets it be null.
POSITIVE_INT = "an integer >= 1"
RULES: list[tuple[str, str]] = [
    ("seed", "an integer"),
    ("model.max_length", POSITIVE_INT),
    ("eval.batch_size", POSITIVE_INT),
    ("eval.generate_batch_size", POSITIVE_INT),
    ("eval.max_new_tokens", POSITIVE_INT),
    ("eval.max_items", f"{POSITIVE_INT} or null"),
    ("eval.show_examples", "an integer >= 0"),
    ("trainer.logging_steps", POSITIVE_INT),
    ("method.alpha", "a number >= 0"),
    ("method.lambda_retain", "a number >= 0"),
    ("method.beta", "a number > 0"),
    ("benchmark.chunk_words", POSITIVE_INT),
    ("device.num_processes", POSITIVE_INT),
    *[(f"trainer.{part}.{key}", rule) for part in ("finetune", "unlearn") for key, rule in (
        ("epochs", "a number > 0"), ("lr", "a number > 0"), ("batch_size", POSITIVE_INT),
        ("per_device_batch_size", POSITIVE_INT), ("warmup_ratio", "a number >= 0"),
        ("weight_decay", "a number >= 0"), ("max_grad_norm", "a number > 0"))],
    *[(f"{section}.{key}", rule) for section in ("generator", "judge") for key, rule in (
        ("max_attempts", POSITIVE_INT), ("concurrency", POSITIVE_INT), ("max_retries", "an integer >= 0"),
        ("timeout", "a number > 0"), ("max_tokens", f"{POSITIVE_INT} or null"), ("max_items", f"{POSITIVE_INT} or null"),
        ("requests_per_minute", "a number > 0 or null"), ("batch_size", POSITIVE_INT),
        ("budget_usd", "a number > 0 or null"))],
]
ATTACK_RULES = [("steps", "a list of integers >= 0"), ("shots", "an integer >= 0"),
                ("prefill_words", POSITIVE_INT), ("calibration_items", "an integer >= 0"),
                ("lora_rank", POSITIVE_INT), ("trainer.lr", "a number > 0"), ("trainer.batch_size", POSITIVE_INT)]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fits(value, rule: str) -> bool:
    if value is None:
        return rule.endswith("or null")
    rule = rule.removesuffix(" or null")
    if rule == "an integer":
        return _is_int(value)
    if rule.startswith("a list of integers"):
        return isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)
    kind, _, bound = rule.partition(" ")[2].partition(" ")
    if (kind == "integer" and not _is_int(value)) or (kind == "number" and not _is_number(value)):
        return False
    op, limit = bound.split(" ")
    return value >= float(limit) if op == ">=" else value > float(limit)


def writable(path: Path) -> bool:
    """Whether `path` (existing or to be made) can be written: a probe file can be made in its first
    existing ancestor (permission bits alone say yes to root on a read-only mount or an immutable folder)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        return False
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def problems(cfg: DictConfig) -> list[str]:
    """Every problem of the composed `cfg`, each as '<key>=<value> must be <rule>' (or why a path fails)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    found = []

    def check(key: str, rule: str, root=plain, prefix: str = "") -> None:
        node = root
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return
            node = node[part]
        if not fits(node, rule):
            found.append(f"{prefix}{key}={node} must be {rule}")

    for key, rule in RULES:
        check(key, rule)
    model = plain.get("model") or {}
    length, context = model.get("max_length"), model.get("context_length")
    if _is_int(length) and _is_int(context) and length > context:
        found.append(f"model.max_length={length} is more than model.context_length={context} positions of "
                     f"model={model.get('name')}; set model.max_length={context} or less")
    attack = plain.get("attack") or {}
    for name, settings in [("", attack), *((f"settings.{k}.", v) for k, v in (attack.get("settings") or {}).items())]:
        for key, rule in ATTACK_RULES:
            check(key, rule, settings, f"attack.{name}")
    for key in ("paths.runs", "paths.store"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not writable(Path(str(value))):
            found.append(f"{key}={value} cannot be written; point it at a writable folder")
    return found
