"""tru unlearn: TRU (CE on reasoning targets + alpha * GradDiff) or a baseline, on the forget split."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import benchmark
from tru_cli.data.encoding import PromptFormatter, UnlearnCollator
from tru_cli.data.files import read_jsonl
from tru_cli.errors import TruError
from tru_cli.stages.targets import item_id

log = logging.getLogger("tru")


def target_texts(cfg: DictConfig, forget: list[dict], targets_path: str) -> list[str]:
    """The assistant answer each forget query is trained toward: `method.target_format` filled
    with the item's reasoning and refusal, aligned to the forget rows by id."""
    path = Path(targets_path)
    if not path.is_file():
        raise TruError(f"unlearn.targets={path} does not exist; run tru generate-targets first")
    by_id = {row.get("id"): row for row in read_jsonl(path)}
    split = cfg.benchmark.forget_split
    ids = [item_id(r, i, split) for i, r in enumerate(forget)]
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise TruError(f"{path} has no target for {len(missing)} of {len(ids)} forget items (first: "
                       f"{missing[0]}); regenerate with tru generate-targets benchmark.forget_split={split}")
    texts = []
    for i in ids:
        row = by_id[i]
        for field in ("reasoning", "refusal"):
            if not isinstance(row.get(field), str):
                raise TruError(f"{path}: target {i} has no '{field}' string")
        texts.append(cfg.method.target_format.format(reasoning=row["reasoning"].strip(),
                                                     refusal=row["refusal"].strip()))
    return texts


def train(cfg: DictConfig, model_path: str, targets_path: str | None, out_dir: Path, on_log=None) -> dict:
    """Unlearn `model_path` and save to `out_dir/model`; returns the training summary."""
    from transformers import set_seed

    from tru_cli.methods.losses import needed_parts
    from tru_cli.methods.trainer import (
        CurveRecorder,
        ForgetRetainDataset,
        UnlearnTrainer,
        fit_and_save,
        training_args,
    )
    from tru_cli.models import loading

    set_seed(int(cfg.seed))
    bench, method = cfg.benchmark, cfg.method
    parts = needed_parts(method)
    forget = benchmark.load_split(bench, bench.forget_split)
    retain = benchmark.retain_rows(bench) if "retain" in parts else []
    model, tok = loading.load(model_path, cfg.device)
    fmt = PromptFormatter(tok, cfg.model)
    targets = None
    if "target" in parts:
        if targets_path is None:
            raise TruError("method needs targets; set unlearn.targets=FILE or let tru generate them")
        targets = [fmt.encode(r["question"], t) for r, t in zip(forget, target_texts(cfg, forget, targets_path),
                                                                 strict=True)]
    data = ForgetRetainDataset([fmt.encode(r["question"], r["answer"]) for r in forget],
                               [fmt.encode(r["question"], r["answer"]) for r in retain], targets,
                               seed=int(cfg.seed))
    curve = CurveRecorder(on_log)
    trainer = UnlearnTrainer(model=model, args=training_args(cfg, cfg.trainer.unlearn, out_dir / "trainer"),
                             train_dataset=data, data_collator=UnlearnCollator(tok.pad_token_id),
                             callbacks=[curve], method=method, parts=parts)
    log.info("unlearn (%s): %d forget items, parts %s, %s epochs", method.name, len(data), parts,
             cfg.trainer.unlearn.epochs)
    metrics = fit_and_save(trainer, tok, curve, out_dir, "unlearn")
    seconds = max(metrics["unlearn/train_seconds"], 1e-9)
    return {**metrics, "unlearn/tokens_per_second": trainer.tokens_seen / seconds,
            "unlearn/forget_items": len(forget)}


def run(cfg: DictConfig, recorder) -> None:
    from tru_cli.stages import artifacts, evaluate

    model_path = artifacts.target_model(cfg)
    targets_path = cfg.unlearn.targets
    if targets_path is None and cfg.method.use_targets:
        targets_path = artifacts.targets(cfg)
    metrics = train(cfg, model_path, targets_path, recorder.run_dir,
                    on_log=lambda row: recorder.log_step(row, "unlearn"))
    recorder.add_metrics(metrics)
    recorder.add_artifact("model", recorder.run_dir / "model")
    recorder.add_artifact("train_log", recorder.run_dir / "train_log.jsonl")
    if targets_path:
        recorder.add_artifact("targets", targets_path)
    if cfg.unlearn.evaluate:
        retain = cfg.eval.retain_logs or evaluate.default_retain_logs(cfg)
        recorder.add_metrics(evaluate.evaluate(cfg, str(recorder.run_dir / "model"), recorder.run_dir, retain))
        recorder.add_artifact("logs", recorder.run_dir / "logs")
