"""tru generate-targets: a reasoning trace and an explained refusal per forget item -> targets.jsonl."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.backends import make_backend
from tru_cli.backends.base import TargetRequest
from tru_cli.backends.prompts import PROMPT_VERSION, messages
from tru_cli.data import benchmark
from tru_cli.data.files import write_jsonl

log = logging.getLogger("tru")


def item_id(row: dict, index: int, split: str) -> str:
    return str(row.get("id") or f"{split}-{index:04d}")


def with_criteria(cfg: DictConfig) -> bool:
    """The prompt's two criteria are on unless the generator or the method (an ablation) turns them off."""
    return bool(cfg.generator.get("criteria", True)) and bool(cfg.method.get("criteria", True))


def requests_for(cfg: DictConfig, rows: list[dict]) -> list[TargetRequest]:
    task = cfg.benchmark.unlearning_task
    criteria = with_criteria(cfg)
    return [TargetRequest(id=item_id(r, i, cfg.benchmark.forget_split), question=r["question"],
                          messages=messages(task, r["question"], criteria), answer=r.get("answer"),
                          meta={k: r[k] for k in ("author", "topic") if k in r})
            for i, r in enumerate(rows)]


def leaks(answer: str | None, text: str) -> bool:
    """Whether a target repeats the forget item's answer verbatim (the paper's criterion 2)."""
    return bool(answer) and answer.strip().lower() in text.lower()


def generate(cfg: DictConfig, out_path: Path) -> dict:
    rows = benchmark.load_split(cfg.benchmark, cfg.benchmark.forget_split)
    requests = requests_for(cfg, rows)
    backend = make_backend(cfg.generator, criteria=with_criteria(cfg))
    results = backend.generate(requests)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    prompt_version = cfg.generator.get("prompt_version", PROMPT_VERSION)
    out, leaked = [], 0
    for req, res in zip(requests, results, strict=True):
        leaked += leaks(req.answer, res.reasoning + " " + res.refusal)
        out.append({"id": req.id, "question": req.question, "reasoning": res.reasoning,
                    "refusal": res.refusal, "backend": backend.name, "model": backend.model,
                    "prompt_version": prompt_version, "criteria": with_criteria(cfg),
                    "benchmark": cfg.benchmark.name, "split": cfg.benchmark.forget_split,
                    "created_at": created})
    write_jsonl(out_path, out)
    log.info("wrote %d targets to %s (%d repeat their answer)", len(out), out_path, leaked)
    return {"targets/count": len(out), "targets/leaks": leaked}


def run(cfg: DictConfig, recorder) -> None:
    path = recorder.run_dir / "targets.jsonl"
    recorder.add_metrics(generate(cfg, path))
    recorder.add_artifact("targets", path)
