"""tru eval: TOFU-format metrics with per-item logs, or re-aggregation of saved logs without a model."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import benchmark
from tru_cli.data.encoding import PromptFormatter
from tru_cli.data.files import write_jsonl
from tru_cli.metrics import scoring, tofu

log = logging.getLogger("tru")


def item_records(model, fmt: PromptFormatter, rows: list[dict], cfg: DictConfig, generate: bool = True) -> list[dict]:
    """Per-item statistics of one eval set: every answer variant scored in one batched pass; the
    answer's Min-40% membership score and extraction strength beside TOFU's statistics."""
    encoded, index = [], []  # index: (row, kind, position)
    for r, row in enumerate(rows):
        encoded.append(fmt.encode(row["question"], row["answer"]))
        index.append((r, "gt", 0))
        if row.get("paraphrased_answer"):
            encoded.append(fmt.encode(row["question"], row["paraphrased_answer"]))
            index.append((r, "para", 0))
        for p, pert in enumerate(row.get("perturbed_answer") or []):
            encoded.append(fmt.encode(row["question"], pert))
            index.append((r, "pert", p))
    stats = scoring.answer_token_stats(model, fmt, encoded, int(cfg.eval.batch_size))
    records = [{"id": row.get("id", str(r)), "question": row["question"], "answer": row["answer"],
                "average_perturb_loss": []} for r, row in enumerate(rows)]
    if generate:
        gens = scoring.greedy_answers(model, fmt, [row["question"] for row in rows],
                                      int(cfg.eval.max_new_tokens), int(cfg.eval.batch_size))
        for rec, gen, rouge in zip(records, gens, tofu.rouge_recalls([r["answer"] for r in rows], gens), strict=True):
            rec.update(generation=gen, **rouge)
    for (r, kind, _), st in zip(index, stats, strict=True):
        avg = st["total"] / max(st["count"], 1)
        if kind == "gt":
            records[r].update(avg_gt_loss=avg, gt_loss=st["total"], num_token_gt=st["count"], prob=math.exp(-avg),
                              extraction_strength=st["extraction_strength"],
                              mink_40=_min_k(st["logprobs"]))
        elif kind == "para":
            records[r]["avg_paraphrased_loss"] = avg
        else:
            records[r]["average_perturb_loss"].append(avg)
    for rec in records:
        if "avg_paraphrased_loss" not in rec and rec["average_perturb_loss"]:
            rec["avg_paraphrased_loss"] = rec["avg_gt_loss"]  # TOFU: real/world sets compare the answer
        if not rec["average_perturb_loss"]:
            rec.pop("average_perturb_loss")
        rec["truth_ratio"] = tofu.truth_ratio(rec)
    return records


def _min_k(logprobs) -> float | None:
    """Min-40% score of an answer for TOFU's privleak. OpenUnlearning counts at least one token
    (MUSE's passages are long enough that its floor-less count never hits zero)."""
    from tru_cli.metrics import mia

    if not len(logprobs):
        return None
    score = mia.min_k(logprobs, mia.MIN_K)
    return float(-min(logprobs)) if math.isnan(score) else score


def evaluate(cfg: DictConfig, model_path: str, out_dir: Path, retain_logs: str | None,
             self_reference: bool = False) -> dict:
    """Evaluate `model_path` on the benchmark, write per-item logs to `out_dir/logs`, return the metrics."""
    from tru_cli.models import loading

    start = time.perf_counter()
    model, tok = loading.load(model_path, cfg.device)
    model.to(loading.device_of(cfg.device)).eval()
    if cfg.benchmark.format != "tofu":
        from tru_cli.evals import EVALUATORS

        metrics, logs = EVALUATORS[cfg.benchmark.format](model, tok, cfg)
        for name, rows in logs.items():
            write_jsonl(Path(out_dir) / "logs" / f"{name}.jsonl", rows)
        metrics["eval/seconds"] = time.perf_counter() - start
        show(metrics)
        return metrics
    fmt = PromptFormatter(tok, cfg.model)
    sets = benchmark.eval_sets(cfg.benchmark, cfg.eval.max_items)
    logs = {name: item_records(model, fmt, rows, cfg) for name, rows in sets.items()}
    holdout = benchmark.holdout_set(cfg.benchmark, cfg.eval.max_items)
    if holdout is not None:  # privleak: membership scores only, no generation
        logs["holdout"] = item_records(model, fmt, holdout, cfg, generate=False)
    tofu.write_logs(Path(out_dir) / "logs", logs)
    reference = logs if self_reference else (tofu.read_logs(retain_logs) if retain_logs else None)
    metrics = tofu.aggregate(logs, reference)
    seconds = time.perf_counter() - start
    items = sum(len(v) for v in logs.values())
    metrics.update({"eval/seconds": seconds, "eval/items": items, "eval/items_per_second": items / seconds})
    show(metrics, logs, int(cfg.eval.show_examples))
    return metrics


def show(metrics: dict, logs: dict | None = None, examples: int = 0) -> None:
    """A rich table of the metrics (and a few forget-set generations)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluation", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, "missing" if value is None else f"{value:.4g}")
    console = Console()
    console.print(table)
    for item in (logs or {}).get("forget", [])[:examples]:
        console.print(f"[bold]Q:[/bold] {item['question']}\n[bold]A:[/bold] {item['generation']}\n")


def default_retain_logs(cfg: DictConfig) -> str | None:
    """The retain model's logs for the embedded default (built once); None for other benchmarks."""
    from tru_cli.stages import artifacts

    if cfg.benchmark.format != "tofu":
        return None  # MUSE and WMDP metrics need no retain-model logs
    if cfg.benchmark.source == "synthetic" and cfg.model.path is None:
        return artifacts.retain_logs(cfg)
    log.warning("no eval.retain_logs given: forget_quality will be missing")
    return None


def judged_answers(cfg: DictConfig, log_dir: Path) -> dict[str, list[dict]] | None:
    """The answers the judge reads, as {"forget": [...], "retain": [...]} rows with `question` and
    `generation`: TOFU's forget/retain sets; MUSE's KnowMem questions; None for multiple choice."""
    if cfg.benchmark.format == "tofu":
        return tofu.read_logs(log_dir)
    if cfg.benchmark.format == "muse":
        from tru_cli.data.files import read_jsonl

        files = {side: log_dir / f"muse_knowmem_{side}.jsonl" for side in ("forget", "retain")}
        return {side: read_jsonl(path) for side, path in files.items() if path.is_file()}
    return None


def judge(cfg: DictConfig, log_dir: Path, model_path: str | None) -> dict:
    """The LLM judge's UQ/RQ over the answers in `log_dir`; per-item verdicts beside the logs."""
    from tru_cli.backends import chat_service
    from tru_cli.data.files import write_jsonl
    from tru_cli.errors import TruError
    from tru_cli.metrics import judge as judge_metrics

    def evaluated_model() -> str:
        if model_path is None:
            raise TruError("judge=hf with eval.from_logs needs judge.model=HUB_ID_OR_DIR (no model is loaded)")
        return model_path

    answers = judged_answers(cfg, Path(log_dir))
    if answers is None:
        log.warning("judge: benchmark=%s has no free-text answers to judge (multiple choice); judge/uq and "
                    "judge/rq are missing", cfg.benchmark.name)
        return {"judge/uq": None, "judge/rq": None}
    jcfg = cfg.judge
    service = chat_service(jcfg, "judge", cfg.device, evaluated_model, "judge")
    metrics, item_logs = judge_metrics.score(service, answers, jcfg.get("max_items"),
                                             bool(jcfg.get("strip_reasoning", False)))
    for rubric, rows in item_logs.items():
        write_jsonl(Path(log_dir) / f"judge_{rubric}.jsonl", rows)
    return {**metrics, **service.summary("judge_calls")}


def run(cfg: DictConfig, recorder) -> None:
    from tru_cli.stages import artifacts

    model_path = None
    if cfg.eval.from_logs:
        logs = tofu.read_logs(cfg.eval.from_logs)
        reference = tofu.read_logs(cfg.eval.retain_logs) if cfg.eval.retain_logs else None
        metrics = tofu.aggregate(logs, reference)
        tofu.write_logs(recorder.run_dir / "logs", logs)
    else:
        retain = cfg.eval.retain_logs or default_retain_logs(cfg)
        model_path = artifacts.target_model(cfg)
        metrics = evaluate(cfg, model_path, recorder.run_dir, retain)
        recorder.add_artifact("model", model_path)
    recorder.add_metrics(metrics)  # recorded before the judge runs: a judge failure keeps them
    if cfg.judge.backend:
        metrics = judge(cfg, recorder.run_dir / "logs", model_path)
        recorder.add_metrics(metrics)
    if cfg.eval.from_logs or cfg.judge.backend:
        show(metrics)
    recorder.add_artifact("logs", recorder.run_dir / "logs")
