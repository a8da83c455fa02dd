"""tru finetune: teach a model the benchmark (target model on `full`, retain model on the retain split)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import benchmark
from tru_cli.data.encoding import PromptFormatter, QACollator
from tru_cli.errors import TruError

log = logging.getLogger("tru")
ROLES = ("full", "retain")


def split_for(cfg: DictConfig, role: str) -> str:
    if role not in ROLES:
        raise TruError(f"finetune.split={role}; choose full or retain")
    return "full" if role == "full" else cfg.benchmark.retain_split


def initial_model(cfg: DictConfig):
    """The model before finetuning: a fresh tiny model (tokenizer trained on the benchmark's text)
    when `model.path` is null, else the checkpoint at model.path."""
    from tru_cli.models import loading, tiny

    if cfg.model.path is None:
        if cfg.model.architecture is None:
            raise TruError(f"model={cfg.model.name} has neither model.path nor an architecture to build")
        return tiny.build_tiny(cfg.model, tokenizer_corpus(cfg))
    return loading.load(cfg.model.path, cfg.device, cfg.model.get("tokenizer_path"))


def tokenizer_corpus(cfg: DictConfig) -> list[str]:
    from tru_cli.backends.offline import OfflineBackend
    from tru_cli.stages.targets import requests_for

    bench = cfg.benchmark
    texts = benchmark.all_text(bench)
    # The refusal vocabulary, so targets tokenise as compactly as answers do.
    try:
        forget = benchmark.forget_rows(bench)
    except TruError:  # a MUSE/WMDP data_dir without the forget corpus: evaluation only
        forget = []
    for result in OfflineBackend().generate(requests_for(cfg, forget)):
        texts += [result.reasoning, result.refusal]
    return texts


def train(cfg: DictConfig, role: str, out_dir: Path, on_log=None) -> dict:
    """Finetune and save to `out_dir/model`; returns the training summary."""
    from transformers import Trainer, set_seed

    from tru_cli.methods.trainer import (
        CurveRecorder,
        ListDataset,
        fit_and_save,
        training_args,
    )

    set_seed(int(cfg.seed))
    rows = benchmark.training_rows(cfg.benchmark, split_for(cfg, role))
    model, tok = initial_model(cfg)
    formatter = PromptFormatter(tok, cfg.model)
    if not rows:
        raise TruError(f"benchmark={cfg.benchmark.name} gives finetune.split={role} nothing to train on")
    data = ListDataset([formatter.encode_row(r) for r in rows])
    curve = CurveRecorder(on_log)
    trainer = Trainer(model=model, args=training_args(cfg, cfg.trainer.finetune, out_dir / "trainer"),
                      train_dataset=data, data_collator=QACollator(tok.pad_token_id), callbacks=[curve])
    log.info("finetune (%s): %d examples, %s epochs", role, len(data), cfg.trainer.finetune.epochs)
    return {**fit_and_save(trainer, tok, curve, out_dir, "finetune"), "finetune/examples": len(data)}


def run(cfg: DictConfig, recorder) -> None:
    metrics = train(cfg, cfg.finetune.split, recorder.run_dir,
                    on_log=lambda row: recorder.log_step(row, "finetune"))
    recorder.add_metrics(metrics)
    recorder.add_artifact("model", recorder.run_dir / "model")
    recorder.add_artifact("train_log", recorder.run_dir / "train_log.jsonl")
