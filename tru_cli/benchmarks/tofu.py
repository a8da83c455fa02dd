"""TOFU-format benchmarks: TOFU itself (`benchmark=tofu`, locuslab/TOFU or a local copy) and the
embedded fictitious-author benchmark (`benchmark=synthetic`), both named splits of QA rows.

Evaluation scores every answer variant of the four eval sets (forget, retain, real authors, world
facts) in one batched pass, plus the holdout set's membership scores, and aggregates them as
TOFU's code does (metrics/tofu.py)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import items, sources
from tru_cli.data.encoding import PromptFormatter
from tru_cli.data.items import row_text
from tru_cli.errors import TruError
from tru_cli.metrics import mia, scoring, tofu

log = logging.getLogger("tru")
USES_RETAIN_LOGS = True  # forget quality compares with the retain model's per-item truth ratios
TARGET_IS_BACKBONE = False  # a backbone learns the fictitious authors first (or a TOFU checkpoint stands in)
# The pipeline's summary table.
HEADLINE = ["tofu/forget_rougeL_recall", "tofu/retain_rougeL_recall", "tofu/forget_truth_ratio",
            "tofu/forget_quality", "tofu/model_utility", "judge/uq", "judge/rq"]

# The roles the pipeline asks for, mapped to TOFU config names.
EVAL_SETS = {
    "forget": "{forget_split}_perturbed",
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}


# ---- rows ----

def training_rows(bench: DictConfig, split: str) -> list[dict]:
    """What a finetune learns: the split, plus `benchmark.pretrain_splits` (for the embedded
    benchmark the general-knowledge sets, which real models bring from pretraining)."""
    if split == "full" and not sources.has_split(bench, "full"):
        present = [s for s in (bench.forget_split, bench.retain_split) if sources.has_split(bench, s)]
        log.warning("benchmark.data_dir=%s has no 'full' split: finetuning on %s", bench.data_dir,
                    " + ".join(present))
        rows = [r for s in present for r in sources.load_split(bench, s)]
    else:
        rows = sources.load_split(bench, split)
    for extra in bench.get("pretrain_splits") or []:
        rows += sources.load_split(bench, extra)
    return rows


def forget_rows(bench: DictConfig) -> list[dict]:
    """The forget split's QA rows: what unlearning forgets and targets are written for."""
    return sources.load_split(bench, bench.forget_split)


def retain_rows(bench: DictConfig) -> list[dict]:
    """What unlearning must keep: the retain split plus `benchmark.retain_also`."""
    rows = sources.load_split(bench, bench.retain_split)
    for extra in bench.get("retain_also") or []:
        rows += sources.load_split(bench, extra)
    return rows


def all_text(bench: DictConfig) -> list[str]:
    """Every string of the benchmark, for training the tiny model's tokenizer: the embedded
    generator's splits, or the rows a finetune reads."""
    if bench.source != "synthetic" or bench.get("data_dir"):
        return [row_text(r) for r in training_rows(bench, "full")]
    texts = []
    for rows in sources.synthetic_splits(bench).values():
        for row in rows:
            for value in row.values():
                texts.extend(value if isinstance(value, list) else [value])
    return [t for t in texts if isinstance(t, str)]


def eval_sets(bench: DictConfig, max_items: int | None = None) -> dict[str, list[dict]]:
    """TOFU's four eval sets. A set whose file is absent from `benchmark.data_dir` is left out with a
    warning (its metrics are then missing); a forget split without perturbed answers stands in for
    `<forget>_perturbed` (no truth ratio then)."""
    out = {}
    for role, pattern in EVAL_SETS.items():
        name = pattern.format(forget_split=bench.forget_split)
        candidates = [name, bench.forget_split] if role == "forget" else [name]
        rows = None
        for split in candidates:
            if sources.has_split(bench, split):
                rows = sources.load_split(bench, split)
                break
        if rows is None:
            log.warning("benchmark.data_dir=%s has no %s file: the %s metrics are missing",
                        bench.data_dir, " or ".join(candidates), role)
            continue
        if role == "forget" and split != name:
            log.warning("%s has no perturbed answers (no %s file): forget truth ratio and forget "
                        "quality are missing", split, name)
        out[role] = sources.capped(rows, max_items)
    return out


def holdout_set(bench: DictConfig, max_items: int | None = None) -> list[dict] | None:
    """TOFU's holdout split (authors never trained on: privleak's non-members), or None with a
    warning when the benchmark or its data_dir has none."""
    split = bench.get("holdout_split")
    if not split or not sources.has_split(bench, split):
        log.warning("no holdout split%s: privleak is missing", f" ({split})" if split else "")
        return None
    return sources.capped(sources.load_split(bench, split), max_items)


def attack_sets(bench: DictConfig, max_items: int | None, which: str | None = None) -> tuple[list[dict], list[dict]]:
    """(forget, retain) QA rows that `tru attack` re-asks and checks utility on."""
    if which not in (None, "qa"):
        raise TruError(f"attack.forget_items={which}; benchmark={bench.name} has one attack set: qa (its forget questions)")
    sets = eval_sets(bench, max_items)
    return sets["forget"], sets["retain"]


# ---- evaluation ----

def set_records(model, fmt: PromptFormatter, sets: dict[str, list[dict]], cfg: DictConfig,
                unanswered: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """`item_records` of several eval sets, their greedy answers generated as one stream of
    `eval.generate_batch_size` batches (every set but those `unanswered`): a set's last, partial
    batch fills up with the next set's questions, and each batch decodes all its max_new_tokens
    steps whatever its width, so TOFU's four answered sets (400, 400, 100, 117) take 8 batches of 128
    instead of 10."""
    answered = [(name, row["question"]) for name, rows in sets.items() if name not in unanswered for row in rows]
    if answered:
        tofu.prefetch_rouge()
    gens = iter(scoring.greedy_answers(model, fmt, [q for _, q in answered], int(cfg.eval.max_new_tokens),
                                       int(cfg.eval.generate_batch_size), "eval: answers"))
    answers = {name: [next(gens) for _ in rows] for name, rows in sets.items() if name not in unanswered}
    return {name: item_records(model, fmt, rows, cfg, answers.get(name), name=f"eval {name}")
            for name, rows in sets.items()}


def item_records(model, fmt: PromptFormatter, rows: list[dict], cfg: DictConfig,
                 generations: list[str] | None = None, name: str = "eval") -> list[dict]:
    """Per-item statistics of one eval set: every answer variant scored in one batched pass; the
    answer's Min-40% membership score and extraction strength beside TOFU's statistics; the greedy
    `generations` (one per row, from `set_records`), when given, with their ROUGE recalls."""
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
    stats = scoring.answer_token_stats(model, fmt, encoded, int(cfg.eval.batch_size), f"{name}: scoring")
    records = [{"id": row.get("id", str(r)), "question": row["question"], "answer": row["answer"],
                "average_perturb_loss": []} for r, row in enumerate(rows)]
    if generations is not None:
        recalls = tofu.rouge_recalls([r["answer"] for r in rows], generations)
        for rec, gen, rouge in zip(records, generations, recalls, strict=True):
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
    if not len(logprobs):
        return None
    score = mia.min_k(logprobs, mia.MIN_K)
    return float(-min(logprobs)) if math.isnan(score) else score


def evaluate(model, tok, cfg: DictConfig, log_dir: Path, retain_logs: str | None,
             self_reference: bool = False) -> tuple[dict, list[tuple[str, str]]]:
    """TOFU metrics of an in-memory model, per-item logs in `log_dir`; the retain model's logs
    (`retain_logs`, or these very logs when `self_reference`) give forget quality and privleak."""
    fmt = PromptFormatter(tok, cfg.model)
    sets = eval_sets(cfg.benchmark, cfg.eval.max_items)
    holdout = holdout_set(cfg.benchmark, cfg.eval.max_items)
    if holdout is not None:  # privleak: membership scores only, no generation
        sets["holdout"] = holdout
    logs = set_records(model, fmt, sets, cfg, unanswered=("holdout",))
    tofu.write_logs(log_dir, logs)
    reference = logs if self_reference else (tofu.read_logs(retain_logs) if retain_logs else None)
    metrics = tofu.aggregate(logs, reference)
    metrics["eval/items"] = sum(len(v) for v in logs.values())
    return metrics, [(it["question"], it["generation"]) for it in logs.get("forget", [])]


def from_logs(log_dir: str, retain_logs: str | None, out_dir: Path) -> dict:
    """Metrics re-aggregated from saved per-item logs (tru's or TOFU's eval_log*.json), copied to `out_dir`."""
    logs = tofu.read_logs(log_dir)
    reference = tofu.read_logs(retain_logs) if retain_logs else None
    tofu.write_logs(out_dir, logs)
    return tofu.aggregate(logs, reference)


def judge_sets(log_dir: Path) -> dict[str, list[dict]]:
    """The forget and retain answers of saved logs (`eval.from_logs` judged without a model)."""
    return tofu.read_logs(log_dir)


def judge_queries(bench: DictConfig, max_items: int | None) -> dict[str, list[dict]]:
    """The judge's queries: the forget questions (UQ) and the retain questions (RQ)."""
    sets = eval_sets(bench, max_items)
    return {"forget": items.judge_queries(sets.get("forget"), "forget", max_items),
            "retain": items.judge_queries(sets.get("retain"), "retain", max_items)}


def published_checkpoint(cfg: DictConfig, role: str) -> str | None:
    """The TOFU-finetuned checkpoint the model config names for `role` (full or retain), used instead
    of finetuning when a real backbone meets the hub's TOFU."""
    checkpoints = cfg.model.get("tofu_checkpoints")
    if cfg.model.path is not None and checkpoints and checkpoints.get(role) and cfg.benchmark.source == "hub":
        return checkpoints.get(role)
    return None

