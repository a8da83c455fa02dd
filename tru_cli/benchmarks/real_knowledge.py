"""Unlearning what a pretrained model really knows (`benchmark=real_knowledge`), from data tru does
not write: TOFU's real-author and world-fact questions, each with three perturbed (false) answers.

The model is probed first (`probe`): its greedy answer to every real-author question, and whether
it contains the answer (ROUGE-L recall >= `benchmark.probe.min_rouge`). The questions it knew are
the forget set; the real-author questions it did not know and the world facts are the knowledge to
keep: a share of them is what a method's retain term trains on, the rest what the keep metrics read. Metrics on each set, in TOFU's real-author convention (metrics/tofu.py): ROUGE-L recall of
the greedy answer, p(answer) / (p(answer) + sum p(perturbed)), and truth ratio max(0, 1 - 1/R).
Forget quality needs a model that never learned the forget set; for knowledge from pretraining no
such model exists here, so it is reported as missing, with that reason."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.benchmarks import tofu as tofu_format  # the per-item statistics of TOFU-format sets
from tru_cli.data import files, items, sources
from tru_cli.data.encoding import PromptFormatter
from tru_cli.data.items import row_text
from tru_cli.errors import TruError
from tru_cli.metrics import scoring, tofu

log = logging.getLogger("tru")
USES_RETAIN_LOGS = False  # no retain model: forget quality is missing by construction
TARGET_IS_BACKBONE = True  # the knowledge comes from pretraining: the model is unlearned as published
HEADLINE = ["real/forget_rougeL_recall", "real/forget_prob", "real/forget_truth_ratio",
            "real/authors_rougeL_recall", "real/authors_truth_ratio", "real/facts_rougeL_recall",
            "real/facts_prob", "real/facts_truth_ratio", "judge/uq", "judge/rq"]
# Our set names -> the per-item log names (tofu_<name>.jsonl) the judge and from_logs read.
LOG_NAMES = {"forget": "forget", "authors": "real_authors", "facts": "world_facts"}


# ---- rows ----

def pool(bench: DictConfig) -> list[dict]:
    """The real-author questions the forget set is drawn from, with stable ids."""
    return [{**row, "id": row.get("id") or f"author-{i:03d}"}
            for i, row in enumerate(sources.load_split(bench, bench.forget_pool))]


def facts(bench: DictConfig) -> list[dict]:
    return [{**row, "id": row.get("id") or f"fact-{i:03d}"}
            for i, row in enumerate(sources.load_split(bench, bench.keep_split))]


def known_ids(bench: DictConfig) -> set[str]:
    """Ids of the pool questions the probe found known (`benchmark.known`, a probe.jsonl)."""
    if not bench.get("known"):
        raise TruError("benchmark.known is not set: tru probes the model before a command runs "
                       "(or give benchmark.known=FILE, the probe.jsonl of an earlier run)")
    rows = files.read_jsonl(Path(str(bench.known)))
    return {str(r["id"]) for r in rows if r.get("known")}


def split_pool(bench: DictConfig) -> tuple[list[dict], list[dict]]:
    """(forget, kept authors): the pool split by what the model knew."""
    known = known_ids(bench)
    rows = pool(bench)
    forget = [r for r in rows if r["id"] in known]
    if not forget:
        raise TruError(f"the probe ({bench.known}) found no known item: nothing to forget; lower "
                       f"benchmark.probe.min_rouge or use a model that knows these authors")
    cap = bench.get("max_forget")
    return forget[:int(cap)] if cap else forget, [r for r in rows if r["id"] not in known]


def keep_halves(bench: DictConfig, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(trained, measured): every `benchmark.retain_every`-th kept item is what a method's retain term
    trains on, the others are what the keep metrics read, so the metrics never score items that
    unlearning trained on (retain_every=1: both are all of them, as TOFU's retain set)."""
    every = int(bench.get("retain_every") or 1)
    if every <= 1:
        return rows, rows
    return rows[::every], [r for i, r in enumerate(rows) if i % every]


def training_rows(bench: DictConfig, split: str) -> list[dict]:
    """What a model without pretraining (the tiny default) reads first: every question of the pool
    and the facts. There is no retain split: no model can be pretrained without the forget set here."""
    if split != "full":
        raise TruError(f"benchmark={bench.name} has no retain model (the knowledge comes from pretraining)")
    return pool(bench) + facts(bench)


def forget_rows(bench: DictConfig) -> list[dict]:
    return split_pool(bench)[0]


def retain_rows(bench: DictConfig) -> list[dict]:
    """What a retain term trains on: its share of the pool questions the model did not know and of
    the world facts (keep_halves)."""
    return keep_halves(bench, split_pool(bench)[1])[0] + keep_halves(bench, facts(bench))[0]


def all_text(bench: DictConfig) -> list[str]:
    return [row_text(r) for r in pool(bench) + facts(bench)]


def keep_sets(bench: DictConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(forget, kept authors, facts) as the metrics read them: the kept sets without what a retain
    term trained on."""
    forget, authors = split_pool(bench)
    return forget, keep_halves(bench, authors)[1], keep_halves(bench, facts(bench))[1]


def attack_sets(bench: DictConfig, max_items: int | None, which: str | None = None) -> tuple[list[dict], list[dict]]:
    if which not in (None, "qa"):
        raise TruError(f"attack.forget_items={which}; benchmark={bench.name} has one attack set: qa (its forget questions)")
    forget, authors, kept_facts = keep_sets(bench)
    return sources.capped(forget, max_items), sources.capped(authors + kept_facts, max_items)


def published_checkpoint(cfg: DictConfig, role: str) -> str | None:
    return None


# ---- probe ----

def probe(model, tok, cfg: DictConfig) -> tuple[list[dict], dict]:
    """Greedy answers to every pool question and whether each contains the answer: the rows of
    probe.jsonl, and counts."""
    bench = cfg.benchmark
    rows = pool(bench)
    fmt = PromptFormatter(tok, cfg.model)
    tofu.prefetch_rouge()
    gens = scoring.greedy_answers(model, fmt, [r["question"] for r in rows], int(bench.probe.max_new_tokens),
                                  int(cfg.eval.generate_batch_size), "probe")
    threshold = float(bench.probe.min_rouge)
    out = []
    for row, gen, rouge in zip(rows, gens, tofu.rouge_recalls([r["answer"] for r in rows], gens), strict=True):
        out.append({"id": row["id"], "question": row["question"], "answer": row["answer"], "generation": gen,
                    "rougeL_recall": rouge["rougeL_recall"], "known": rouge["rougeL_recall"] >= threshold})
    known = sum(r["known"] for r in out)
    log.info("probe: the model knew %d of %d %s questions (ROUGE-L recall >= %g)", known, len(out),
             bench.forget_pool, threshold)
    return out, {"probe/known": known, "probe/items": len(out)}


# ---- evaluation ----

def _set_metrics(name: str, items: list[dict]) -> dict:
    """tofu.aggregate_set in the real-author convention, renamed to `real/<name>_...`."""
    return {f"real/{name}_{k[3:]}": v for k, v in tofu.aggregate_set("real_authors", items).items()}


def aggregate(logs: dict[str, list[dict]]) -> dict:
    metrics: dict = {}
    for name, log_name in LOG_NAMES.items():
        if logs.get(log_name):
            metrics.update(_set_metrics(name, logs[log_name]))
    log.warning("real/forget_quality is missing: the forget set is knowledge from pretraining, and no "
                "model that never learned it exists to compare with")
    metrics["real/forget_quality"] = None
    return metrics


def evaluate(model, tok, cfg: DictConfig, log_dir: Path, retain_logs: str | None = None,
             self_reference: bool = False) -> tuple[dict, list[tuple[str, str]]]:
    bench, cap = cfg.benchmark, cfg.eval.max_items
    forget, authors, kept_facts = keep_sets(bench)
    sets = {"forget": forget, "authors": authors, "facts": kept_facts}
    fmt = PromptFormatter(tok, cfg.model)
    records = tofu_format.set_records(model, fmt, {n: sources.capped(rows, cap) for n, rows in sets.items() if rows}, cfg)
    logs = {LOG_NAMES[name]: recs for name, recs in records.items()}
    tofu.write_logs(log_dir, logs)
    metrics = aggregate(logs)
    metrics["eval/items"] = sum(len(v) for v in logs.values())
    examples = [(it["question"], it["generation"]) for it in logs["forget"]]
    return metrics, examples


def from_logs(log_dir: str, retain_logs: str | None, out_dir: Path) -> dict:
    logs = tofu.read_logs(log_dir)
    tofu.write_logs(out_dir, logs)
    return aggregate(logs)


def judge_queries(bench: DictConfig, max_items: int | None) -> dict[str, list[dict]]:
    """The judge's queries: the real-author questions the model knew (UQ) and the kept authors and
    world facts the metrics read (RQ)."""
    forget, authors, kept_facts = keep_sets(bench)
    return {"forget": items.judge_queries(forget, "forget", max_items),
            "retain": items.judge_queries(authors + kept_facts, "kept", max_items)}


def judge_sets(log_dir: Path) -> dict[str, list[dict]]:
    """Forget answers for UQ; the kept authors' and facts' answers for RQ."""
    logs = tofu.read_logs(log_dir)
    return {"forget": logs.get("forget", []),
            "retain": logs.get("real_authors", []) + logs.get("world_facts", [])}
