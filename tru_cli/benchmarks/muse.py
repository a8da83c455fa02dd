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
from tru_cli.data import sources
from tru_cli.data.files import read_jsonl, write_jsonl
from tru_cli.metrics import muse

log = logging.getLogger("tru")
USES_RETAIN_LOGS = False  # PrivLeak's reference is MUSE's published retrained-model AUC
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
        metrics["muse/privleak"], parts = muse.privleak_scores(
            model, tok, [r["text"] for r in forget], [r["text"] for r in holdout], float(settings.auc_retrain),
            batch, window)
        metrics["muse/privleak_auc"] = parts["auc"]
        logs["muse_privleak"] = ([{"set": "forget", "min_k": s} for s in parts["forget_min_k"]]
                                 + [{"set": "holdout", "min_k": s} for s in parts["holdout_min_k"]])
    for key, value in metrics.items():
        if value is None:
            log.warning("%s is missing (its data is absent)", key)
    for name, rows in logs.items():
        write_jsonl(Path(log_dir) / f"{name}.jsonl", rows)
    return metrics, []


def judge_sets(log_dir: Path) -> dict[str, list[dict]]:
    """MUSE's KnowMem forget and retain answers (question, generation), those present."""
    files = {side: Path(log_dir) / f"muse_knowmem_{side}.jsonl" for side in ("forget", "retain")}
    return {side: read_jsonl(path) for side, path in files.items() if path.is_file()}
