"""MUSE (muse-bench/MUSE-News and MUSE-Books, Shi et al. 2024): raw forget and retain corpora as the
unlearning data, and MUSE's metrics (metrics/muse.py holds the definitions): VerbMem on the forget
passages, KnowMem on forget and retain questions, PrivLeak on forget vs holdout texts against
MUSE's retrained-model AUC. A file absent from benchmark.data_dir makes its metric missing, with a
warning, never zero."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.benchmarks._corpus import *  # noqa: F403 (the corpus half of the interface)
from tru_cli.data import items, sources
from tru_cli.data.files import read_jsonl, write_jsonl
from tru_cli.errors import TruError
from tru_cli.metrics import mia, muse

log = logging.getLogger("tru")
USES_RETAIN_LOGS = False  # no retain model; PrivLeak's reference: benchmark.retrain_model's AUC, else MUSE's constant
# MUSE's targets are published models that already read the corpus; a published backbone is taken as
# it is (only a model built from scratch, the tiny default, reads the corpus first)
TARGET_IS_BACKBONE = True
HEADLINE = ["muse/verbmem_forget", "muse/knowmem_forget", "muse/knowmem_retain", "muse/privleak",
            "judge/uq", "judge/rq"]


def _rows(bench: DictConfig, role: str, max_items: int | None) -> list[dict] | None:
    rows = sources.load_role(bench, role)
    if rows is None:
        log.warning("%s", sources.absent(bench, role))
        return None
    return sources.capped(rows, max_items)


def attack_sets(bench: DictConfig, max_items: int | None, which: str | None = None) -> tuple[list[dict], list[dict]]:
    """(forget, retain) rows that `tru attack` re-asks. `knowmem` (the default): MUSE's KnowMem forget
    questions in chat format with no few-shot prefix, scored by ROUGE recall of the greedy answer
    against the short gold answer (MUSE's own KnowMem is few-shot ROUGE-L F1). `verbmem`: the VerbMem
    forget passages' openings continued as raw text, scored as VerbMem scores them (ROUGE-L F1 of
    the continuation). Retain rows are the KnowMem retain questions either way (utility under a
    weight attack)."""
    which = which or "knowmem"
    if which not in ("knowmem", "verbmem"):
        raise TruError(f"attack.forget_items={which}; benchmark={bench.name} takes knowmem (its forget questions) "
                       "or verbmem (continuations of its forget passages)")
    role = f"{which}_forget"
    forget, retain = _rows(bench, role, max_items), _rows(bench, "knowmem_retain", max_items)
    if not forget:
        raise TruError(f"tru attack on benchmark={bench.name} with attack.forget_items={which} re-asks its {role} items: "
                       f"{sources.absent(bench, role)}")
    if which == "verbmem":
        forget = [{"question": r["prompt"], "answer": r["gt"], "kind": "continuation"} for r in forget]
    return ([{"id": f"{role}-{i}", **r} for i, r in enumerate(forget)],
            [{"id": f"knowmem_retain-{i}", **r} for i, r in enumerate(retain or [])])


def evaluate(model, tok, cfg: DictConfig, log_dir: Path, retain_logs: str | None = None,
             self_reference: bool = False) -> tuple[dict, list]:
    bench, cap, batch = cfg.benchmark, cfg.eval.max_items, int(cfg.eval.batch_size)
    settings = bench.muse
    metrics = dict.fromkeys(["muse/verbmem_forget", "muse/knowmem_forget", "muse/knowmem_retain",
                             "muse/privleak"])
    logs: dict = {}
    verbmem = _rows(bench, "verbmem_forget", cap)
    if verbmem:
        metrics["muse/verbmem_forget"], logs["muse_verbmem_forget"] = muse.verbmem(
            model, tok, verbmem, int(settings.verbmem_max_new_tokens), batch)
    for side in ("forget", "retain"):
        qa, icl = _rows(bench, f"knowmem_{side}", cap), _rows(bench, f"knowmem_{side}_icl", None)
        if qa and icl:
            metrics[f"muse/knowmem_{side}"], logs[f"muse_knowmem_{side}"] = muse.knowmem(
                model, tok, qa, icl, int(settings.knowmem_max_new_tokens), batch)
    forget, holdout = _rows(bench, "privleak_forget", cap), _rows(bench, "privleak_holdout", cap)
    if forget and holdout:
        # MUSE scores whole passages; only the model's context window cuts them
        window = getattr(model.config, "max_position_embeddings", None)
        reference = reference_auc(retain_logs) if retain_logs else float(settings.auc_retrain)
        metrics["muse/privleak"], parts = muse.privleak_scores(
            model, tok, [r["text"] for r in forget], [r["text"] for r in holdout], reference, batch, window)
        if self_reference:  # the retrained model itself: its own AUC is the reference
            metrics["muse/privleak"], reference = 0.0, parts["auc"]
        metrics["muse/privleak_auc"] = parts["auc"]
        metrics["muse/privleak_auc_reference"] = reference
        logs["muse_privleak"] = ([{"set": "forget", "min_k": s} for s in parts["forget_min_k"]]
                                 + [{"set": "holdout", "min_k": s} for s in parts["holdout_min_k"]])
    for key, value in metrics.items():
        if value is None:
            log.warning("%s is missing (its data is absent)", key)
    for name, rows in logs.items():
        write_jsonl(Path(log_dir) / f"{name}.jsonl", rows)
    return metrics, []


def reference_model(bench: DictConfig) -> str | None:
    """The retrained model (hub id or local dir) whose own forget-vs-holdout AUC is PrivLeak's
    reference, when `benchmark.retrain_model` names one; else MUSE's published constant is."""
    return bench.get("retrain_model")


def reference_auc(log_dir: str) -> float:
    """The forget-vs-holdout Min-K% AUC in the retrained model's logs (muse_privleak.jsonl)."""
    path = Path(log_dir) / "muse_privleak.jsonl"
    if not path.is_file():
        raise TruError(f"{log_dir} has no muse_privleak.jsonl: the retrained model's evaluation lacks the "
                       "privleak texts; give benchmark.data_dir with privleak/ or set benchmark.retrain_model=null")
    rows = read_jsonl(path)
    return mia.forget_holdout_auc([r["min_k"] for r in rows if r["set"] == "forget"],
                                  [r["min_k"] for r in rows if r["set"] == "holdout"])


def judge_sets(log_dir: Path) -> dict[str, list[dict]]:
    """MUSE's KnowMem forget and retain answers (question, generation) of saved logs, those present."""
    files = {side: Path(log_dir) / f"muse_knowmem_{side}.jsonl" for side in ("forget", "retain")}
    return {side: read_jsonl(path) for side, path in files.items() if path.is_file()}


def judge_queries(bench: DictConfig, max_items: int | None) -> dict[str, list[dict]]:
    """The judge's queries: MUSE's KnowMem forget (UQ) and retain (RQ) questions, asked in chat
    format with no few-shot prefix (KnowMem's own answers are 32-token few-shot completions cut at
    the first blank line: a refusal after a reasoning trace would never reach the judge)."""
    return {side: items.judge_queries(_rows(bench, f"knowmem_{side}", max_items), f"knowmem_{side}", max_items)
            for side in ("forget", "retain")}
