"""Writing the targets: one request per forget item (the generation prompt of backends/prompts.py),
answered by the offline templates or by a chat model, each reply split into trace and refusal,
asked again when it is empty or leaks, and written to targets.jsonl with its provenance."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.backends import chat_service, make_backend
from tru_cli.backends.base import TargetRequest
from tru_cli.backends.chat import Reject
from tru_cli.backends.prompts import PROMPT_VERSION, messages, split_target
from tru_cli.data.files import write_jsonl
from tru_cli.data.items import item_id, query
from tru_cli.errors import TruError
from tru_cli.targets.leaks import leaks

log = logging.getLogger("tru")


def with_criteria(cfg: DictConfig) -> bool:
    """The prompt's two criteria are on unless the generator or the method (an ablation) turns them off."""
    return bool(cfg.generator.get("criteria", True)) and bool(cfg.method.get("criteria", True))


def think_tags(cfg: DictConfig) -> bool:
    return bool(cfg.generator.get("think_tags", False))


def requests_for(cfg: DictConfig, rows: list[dict]) -> list[TargetRequest]:
    task = cfg.benchmark.unlearning_task
    criteria = with_criteria(cfg)
    return [TargetRequest(id=item_id(r, i, cfg.benchmark.forget_split), question=query(r),
                          messages=messages(task, query(r), criteria, think_tags(cfg)),
                          answer=r.get("answer"),
                          meta={k: r[k] for k in ("author", "topic") if k in r} if "question" in r else {"task": task})
            for i, r in enumerate(rows)]


def _offline(cfg: DictConfig, requests: list[TargetRequest]) -> tuple[list, dict]:
    backend = make_backend(cfg.generator, criteria=with_criteria(cfg))
    results = [(r.reasoning, r.refusal) for r in backend.generate(requests)]
    return results, {"backend": backend.name, "model": backend.model}


def _chat(cfg: DictConfig, requests: list[TargetRequest], default_model: Callable[[], str]) -> tuple[list, dict]:
    """Targets from an API or local model: each reply split into trace and refusal, and asked again
    when the refusal is empty or leaks the answer (`generator.leak_rouge`)."""
    gen = cfg.generator
    service = chat_service(gen, "generator", cfg.device, default_model, "targets")
    threshold = gen.get("leak_rouge")

    def accept(i, reply):
        reasoning, refusal = split_target(reply.reasoning, reply.content)
        if not refusal:
            raise Reject("empty")
        if leaks(requests[i].answer, reasoning + " " + refusal, threshold, requests[i].question):
            raise Reject("leak")
        return reasoning, refusal

    results = service.run([r.messages for r in requests], accept)
    return results, {"backend": service.backend.name, "model": service.backend.model,
                     "usage": service.summary("generator")}


def generate(cfg: DictConfig, rows: list[dict], out_path: Path, default_model: Callable[[], str]) -> dict:
    """Targets for the forget `rows` to `out_path`; the counts for results.json. `default_model`
    gives the local model that writes them when `generator=hf` names none (the run's own model)."""
    requests = requests_for(cfg, rows)
    backend = cfg.generator.backend
    results, info = (_offline(cfg, requests) if backend == "offline"
                     else _chat(cfg, requests, default_model))
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    prompt_version = cfg.generator.get("prompt_version", PROMPT_VERSION)
    out, leaked, untraced = [], 0, 0
    for req, res in zip(requests, results, strict=True):
        if res is None:  # every attempt rejected: logged and counted, left out of the targets
            continue
        reasoning, refusal = res
        leaked += leaks(req.answer, reasoning + " " + refusal)
        untraced += not reasoning
        out.append({"id": req.id, "question": req.question, "reasoning": reasoning,
                    "refusal": refusal, "backend": info["backend"], "model": info["model"],
                    "prompt_version": prompt_version, "criteria": with_criteria(cfg),
                    "think_tags": think_tags(cfg), "benchmark": cfg.benchmark.name,
                    "split": cfg.benchmark.forget_split, "created_at": created})
    if not out:
        raise TruError(f"no usable target: all {len(requests)} forget items were rejected "
                       f"{cfg.generator.get('max_attempts')} times (see the warnings above)")
    missing = len(requests) - len(out)
    if missing and not cfg.generator.get("allow_missing", False):
        raise TruError(f"{missing} of {len(requests)} forget items got no usable target (answers so far are "
                       f"cached); rerun the same command to ask for them again, or set "
                       f"generator.allow_missing=true to unlearn without them")
    write_jsonl(out_path, out)
    log.info("wrote %d targets to %s (%d repeat their answer, %d without a reasoning trace)",
             len(out), out_path, leaked, untraced)
    if untraced:
        fix = ("the model ignored the request for them; use a reasoning model" if think_tags(cfg)
               else "set generator.think_tags=true for plain chat models")
        log.warning("%d targets have no reasoning trace: no reasoning field and no <think> tags (%s)",
                    untraced, fix)
    return {"targets/count": len(out), "targets/failed": len(requests) - len(out),
            "targets/leaks": leaked, "targets/without_reasoning": untraced, **info.get("usage", {})}
