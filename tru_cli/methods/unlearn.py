"""Unlearning a model: the rows each method trains on (forget answers, reasoning targets, IDK
answers, retain partners), reference statistics computed once before training, what trains (all,
a regex of parameters, or LoRA adapters), and the run through `UnlearnTrainer`.

The caller hands in the benchmark's forget and retain rows; nothing here knows which benchmark
they came from."""

from __future__ import annotations

import copy
import logging
import math
import re
from pathlib import Path

from omegaconf import DictConfig
from transformers import set_seed

from tru_cli import distributed, timing
from tru_cli.data import idk
from tru_cli.data.encoding import IGNORE, PromptFormatter, UnlearnCollator
from tru_cli.data.files import read_jsonl
from tru_cli.data.items import item_id, query
from tru_cli.errors import TruError
from tru_cli.methods import lora, memory, objectives
from tru_cli.methods.losses import token_nll
from tru_cli.methods.trainer import (
    CurveRecorder,
    ForgetRetainDataset,
    UnlearnTrainer,
    fit_and_save,
    training_args,
)
from tru_cli.models import batching, loading

log = logging.getLogger("tru")


def target_texts(cfg: DictConfig, forget: list[dict], targets_path: str) -> list[str | None]:
    """The assistant answer each forget query is trained toward: `method.target_format` filled
    with the item's reasoning and refusal, aligned to the forget rows by id (None: no target)."""
    path = Path(targets_path)
    if not path.is_file():
        raise TruError(f"unlearn.targets={path} does not exist; run tru generate-targets first")
    by_id = {row.get("id"): row for row in read_jsonl(path)}
    split = cfg.benchmark.forget_split
    ids = [item_id(r, i, split) for i, r in enumerate(forget)]
    missing = [i for i in ids if i not in by_id]
    if len(missing) == len(ids):
        raise TruError(f"{path} has no target for any of the {len(ids)} forget items (first: {missing[0]}); "
                       f"regenerate with tru generate-targets benchmark.forget_split={split}")
    if missing:  # the generator gave up on these (see targets/failed): they are left out of unlearning
        log.warning("%s has no target for %d of %d forget items (first: %s); unlearning leaves them out",
                    path, len(missing), len(ids), missing[0])
    texts: list[str | None] = []
    for i in ids:
        if i not in by_id:
            texts.append(None)
            continue
        row = by_id[i]
        for field in ("reasoning", "refusal"):
            if not isinstance(row.get(field), str):
                raise TruError(f"{path}: target {i} has no '{field}' string")
        texts.append(cfg.method.target_format.format(reasoning=row["reasoning"].strip(),
                                                     refusal=row["refusal"].strip()))
    return texts


def with_reference_nll(model, encoded: list[dict], pad_id: int, batch_size: int) -> None:
    """Add each sequence's summed answer NLL under `model` (the reference, before any update) as
    `ref_nll`: NPO and DPO need only this per-sequence number, so no second model is held."""
    model.eval()
    nlls = batching.map_forward(model, encoded, pad_id, batch_size,
                                lambda logits, batch: token_nll(logits, batch["labels"])[0].tolist())
    for row, value in zip(encoded, nlls, strict=True):
        row["ref_nll"] = value
    model.train()


def freeze_all_but(model, pattern: str | None) -> int:
    """Train only parameters whose name matches `method.trainable` (RMU trains a few layers)."""
    if not pattern:
        return sum(p.numel() for p in model.parameters())
    regex, trained = re.compile(pattern), 0
    for name, param in model.named_parameters():
        param.requires_grad = bool(regex.search(name))
        trained += param.numel() if param.requires_grad else 0
    if not trained:
        raise TruError(f"method.trainable={pattern} matches no parameter of the model")
    return trained


def build_rows(cfg: DictConfig, fmt: PromptFormatter, forget: list[dict], targets_path: str | None,
               parts: tuple[str, ...]) -> list[dict]:
    """Encoded sub-examples per forget item: `forget` (original answer), `target`, `idk`. Items the
    target generator gave up on (no target) are left out when the method trains on targets."""
    split = cfg.benchmark.forget_split
    rows = [{"forget": fmt.encode_row(r)} for r in forget]
    if "idk" in parts:
        answers = idk.load_answers(cfg.method.get("idk_file"))
        epochs = max(1, math.ceil(float(cfg.trainer.unlearn.epochs)))
        for i, (row, r) in enumerate(zip(rows, forget, strict=True)):
            # one IDK answer per epoch, redrawn as OpenUnlearning does; encoded (and given reference
            # statistics) up front so that nothing is tokenised or scored inside the training loop
            row["idk_by_epoch"] = [fmt.encode(query(r), idk.answer_for(item_id(r, i, split), answers, epoch))
                                   for epoch in range(epochs)]
            row["idk"] = row["idk_by_epoch"][0]
    if "target" in parts:
        if targets_path is None:
            raise TruError("method needs targets; set unlearn.targets=FILE or let tru generate them")
        cut = []  # (item id, target tokens that did not fit)
        for i, (row, r, text) in enumerate(zip(rows, forget, target_texts(cfg, forget, targets_path), strict=True)):
            if text is not None:
                row["target"] = fmt.encode(query(r), text)
                if row["target"].get("dropped"):
                    cut.append((item_id(r, i, split), row["target"]["dropped"]))
        if cut and not (cfg.get("unlearn") or {}).get("allow_cut_targets"):  # tru pipeline has no unlearn node
            ids = ", ".join(i for i, _ in cut[:3]) + (", ..." if len(cut) > 3 else "")
            raise TruError(f"{len(cut)} of {len(forget)} targets do not fit model.max_length={fmt.max_length} "
                           f"({ids}): training would cut their refusals; set model.max_length="
                           f"{fmt.max_length + max(n for _, n in cut)} or more (or a lower benchmark.chunk_words), "
                           f"or unlearn.allow_cut_targets=true to train on the cut targets")
        rows = [row for row in rows if "target" in row]
    return rows


def target_token_counts(rows: list[dict]) -> dict:
    """Supervised target tokens, and target tokens cut off by model.max_length (0 unless allowed)."""
    targets = [row["target"] for row in rows if "target" in row]
    return {"unlearn/target_tokens": sum(sum(label != IGNORE for label in t["labels"]) for t in targets),
            "unlearn/target_tokens_dropped": sum(t.get("dropped", 0) for t in targets)}


def parts_of(method: DictConfig) -> tuple[str, ...]:
    """The sub-batches `method` reads, or a TruError naming the bad term."""
    try:
        return objectives.needed_parts(method)
    except ValueError as exc:
        raise TruError(str(exc)) from None


def train(cfg: DictConfig, model_path: str, forget: list[dict], retain: list[dict],
          targets_path: str | None, out_dir: Path, on_log=None) -> dict:
    """Unlearn `model_path` on the `forget` rows (keeping the `retain` rows, when the method has a
    retain term) and save to `out_dir/model`; returns the training summary."""
    set_seed(int(cfg.seed))
    method = cfg.method
    parts = parts_of(method)
    model, tok = loading.load(model_path, cfg.device)
    timing.mark("model_loaded")
    fmt = PromptFormatter(tok, cfg.model)
    rows = build_rows(cfg, fmt, forget, targets_path, parts)
    timing.mark("data_encoded")
    for key in objectives.reference_stats(method) if objectives.precomputes_reference(method) else ():
        encoded = [seq for row in rows for seq in (row["idk_by_epoch"] if key == "idk" else [row[key]])]
        with_reference_nll(model, encoded, tok.pad_token_id, int(cfg.eval.batch_size))
    adapters = cfg.trainer.get("lora")
    if adapters:
        if method.get("trainable"):
            raise TruError("method.trainable and trainer=lora both choose what trains; drop one")
        model = lora.apply(model, adapters, bool(cfg.trainer.get("gradient_checkpointing")))
    ref_model = None
    if objectives.needs_reference_model(method):  # token-level terms: the frozen start point
        ref_model = lora.AdapterOff(model) if adapters else copy.deepcopy(model).eval().requires_grad_(False)
    trained = lora.trainable_count(model) if adapters else freeze_all_but(model, method.get("trainable"))
    data = ForgetRetainDataset(rows, [fmt.encode_row(r) for r in retain] if "retain" in parts else [],
                               seed=int(cfg.seed))
    memory.check_host(cfg, data.longest(), len(parts), ref_model is not None and not adapters)
    objective = objectives.Objective(method, model, ref_model, seed=int(cfg.seed))
    curve = CurveRecorder(on_log)
    trainer = UnlearnTrainer(model=model, args=training_args(cfg, cfg.trainer.unlearn, out_dir / "trainer"),
                             train_dataset=data, data_collator=UnlearnCollator(tok.pad_token_id),
                             callbacks=[curve], objective=objective)
    if ref_model is not None:
        ref_model.to(trainer.args.device)
    timing.mark("trainer_built")
    log.info("unlearn (%s): %d forget items, parts %s, %s epochs, %d trained parameters", method.name,
             len(data), parts, cfg.trainer.unlearn.epochs, trained)
    metrics = fit_and_save(trainer, tok, curve, out_dir, "unlearn",
                           to_save=(lambda m: lora.finalize(m, adapters)) if adapters else None)
    seconds = max(metrics["unlearn/train_seconds"], 1e-9)
    # every process sees its share of tokens: the run's throughput is this process's times their count
    return {**metrics, "unlearn/tokens_per_second": trainer.tokens_seen * distributed.world_size() / seconds,
            "unlearn/processes": distributed.world_size(),
            "unlearn/forget_items": len(rows), "unlearn/trained_parameters": trained,
            **(target_token_counts(rows) if "target" in parts else {}),
            "unlearn/reference_model_held": float(ref_model is not None and not adapters),
            "unlearn/lora": float(bool(adapters))}


def memory_plan(cfg: DictConfig) -> dict:
    """Log the memory plan (methods/memory.py); its numbers for results.json."""
    plan = memory.plan(cfg, len(objectives.needed_parts(cfg.method)), objectives.needs_reference_model(cfg.method)
                       and not cfg.trainer.get("lora"))
    text = memory.describe(cfg, plan)
    (log.info if plan.fits else log.warning)("%s", text)
    return {"plan/total_gib": plan.total, "plan/budget_gib": plan.budget, "plan/fits": float(plan.fits),
            **{f"plan/{name.split(' ')[0]}_gib": gib for name, gib in plan.parts.items()}}
