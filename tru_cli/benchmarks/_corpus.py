"""What the corpus benchmarks (MUSE, WMDP) share: their raw forget and retain corpora, cut into
chunks, are the unlearning data; their targets are published checkpoints (a published backbone is
unlearned as it is); `eval.from_logs`, which reads TOFU-format logs, does not apply. What `tru attack`
re-asks is each module's own (`attack_sets`: MUSE's KnowMem or VerbMem, WMDP's questions)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import sources
from tru_cli.errors import TruError

__all__ = ["training_rows", "forget_rows", "retain_rows", "all_text", "from_logs",
           "published_checkpoint"]


def training_rows(bench: DictConfig, split: str) -> list[dict]:
    return sources.corpus_training_rows(bench, split)


def forget_rows(bench: DictConfig) -> list[dict]:
    """The forget corpus in chunks: each whole chunk is the forget sequence and, for TRU, the user
    message of its target."""
    return sources.capped(sources.required_corpus(bench, "forget_corpus"), bench.get("max_forget"))


def retain_rows(bench: DictConfig) -> list[dict]:
    return sources.required_corpus(bench, "retain_corpus", "; the method's retain term needs it")


def all_text(bench: DictConfig) -> list[str]:
    return sources.role_texts(bench)


def from_logs(log_dir: str, retain_logs: str | None, out_dir: Path) -> dict:
    raise TruError("eval.from_logs re-aggregates TOFU-format logs; use benchmark=tofu or benchmark=synthetic")


def published_checkpoint(cfg: DictConfig, role: str) -> str | None:
    return None
