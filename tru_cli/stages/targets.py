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
from tru_cli.errors import TruError

log = logging.getLogger("tru")


def item_id(row: dict, index: int, split: str) -> str:
    return str(row.get("id") or f"{split}-{index:04d}")


def with_criteria(cfg: DictConfig) -> bool:
    """The prompt's two criteria are on unless the generator or the method (an ablation) turns them off."""
    return bool(cfg.generator.get("criteria", True)) and bool(cfg.method.get("criteria", True))


def think_tags(cfg: DictConfig) -> bool:
    return bool(cfg.generator.get("think_tags", False))


def query(row: dict) -> str:
    """The user message of a forget item: TOFU's question, or a MUSE/WMDP passage (the paper puts
    "the raw data point from the unlearning set" in the user turn)."""
    return row["question"] if "question" in row else row["text"]


def requests_for(cfg: DictConfig, rows: list[dict]) -> list[TargetRequest]:
    task = cfg.benchmark.unlearning_task
    criteria = with_criteria(cfg)
    return [TargetRequest(id=item_id(r, i, cfg.benchmark.forget_split), question=query(r),
                          messages=messages(task, query(r), criteria, think_tags(cfg)),
                          answer=r.get("answer"),
                          meta={k: r[k] for k in ("author", "topic") if k in r} if "question" in r else {"task": task})
            for i, r in enumerate(rows)]


def leaks(answer: str | None, text: str, rouge_threshold: float | None = None, question: str = "") -> bool:
    """Whether a target gives away the forget item's answer (the paper's criterion 2): the answer
    verbatim, or most of what the answer adds to the question (ROUGE-L recall, over the answer's
    words that are not in the question, >= the threshold; a refusal may name the question's subject)."""
    if not answer or not answer.strip():
        return False
    if answer.strip().lower() in text.lower():
        return True
    if rouge_threshold is None:
        return False
    from rouge_score.tokenize import tokenize

    from tru_cli.metrics.tofu import rouge_recalls

    asked = set(tokenize(question, None))
    novel = [w for w in tokenize(answer, None) if w not in asked]
    return bool(novel) and rouge_recalls([" ".join(novel)], [text])[0]["rougeL_recall"] >= rouge_threshold


def _offline(cfg: DictConfig, requests: list[TargetRequest]) -> tuple[list, dict]:
    backend = make_backend(cfg.generator, criteria=with_criteria(cfg))
    results = [(r.reasoning, r.refusal) for r in backend.generate(requests)]
    return results, {"backend": backend.name, "model": backend.model}


def _chat(cfg: DictConfig, requests: list[TargetRequest]) -> tuple[list, dict]:
    """Targets from an API or local model: each reply split into trace and refusal, and asked again
    when the refusal is empty or leaks the answer (`generator.leak_rouge`)."""
    from tru_cli.backends import chat_service
    from tru_cli.backends.chat import Reject
    from tru_cli.backends.prompts import split_target
    from tru_cli.stages import artifacts

    gen = cfg.generator
    service = chat_service(gen, "generator", cfg.device, lambda: artifacts.target_model(cfg), "targets")
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


def generate(cfg: DictConfig, out_path: Path) -> dict:
    rows = benchmark.forget_rows(cfg.benchmark)
    requests = requests_for(cfg, rows)
    backend = cfg.generator.backend
    results, info = _offline(cfg, requests) if backend == "offline" else _chat(cfg, requests)
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


def run(cfg: DictConfig, recorder) -> None:
    path = recorder.run_dir / "targets.jsonl"
    recorder.add_metrics(generate(cfg, path))
    recorder.add_artifact("targets", path)
