"""Finetuning: teach a model a benchmark's rows (the target model on `full`, the retain model on
the retain split) with plain SFT through transformers.Trainer, prompts masked."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig
from transformers import Trainer

from tru_cli.data.encoding import PromptFormatter, QACollator
from tru_cli.errors import TruError
from tru_cli.methods.trainer import (
    CurveRecorder,
    ListDataset,
    StepProgress,
    fit_and_save,
    training_args,
)

log = logging.getLogger("tru")


def train(cfg: DictConfig, role: str, rows: list[dict], model, tok, out_dir: Path, on_log=None) -> dict:
    """Finetune `model` on `rows` and save to `out_dir/model`; returns the training summary.
    (The caller seeds before it builds `model`, whose random initialisation depends on it.)"""
    formatter = PromptFormatter(tok, cfg.model)
    if not rows:
        raise TruError(f"benchmark={cfg.benchmark.name} gives finetune.split={role} nothing to train on")
    data = ListDataset([formatter.encode_row(r) for r in rows])
    curve = CurveRecorder(on_log)
    args = training_args(cfg, cfg.trainer.finetune, out_dir / "trainer")
    args.include_num_input_tokens_seen = "non_padding"  # tokens/s of the progress bar
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=QACollator(tok.pad_token_id),
                      callbacks=[curve, StepProgress(f"finetune {role}", lambda state: state.num_input_tokens_seen)])
    log.info("finetune (%s): %d examples, %s epochs", role, len(data), cfg.trainer.finetune.epochs)
    return {**fit_and_save(trainer, tok, curve, out_dir, "finetune"), "finetune/examples": len(data)}
