"""Training through transformers.Trainer: plain SFT for finetune, and one Trainer subclass whose
`compute_loss` evaluates the configured unlearning loss on its sub-batches."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import logging
import random
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from tru_cli import distributed, progress, timing
from tru_cli.data.files import write_jsonl
from tru_cli.errors import TruError
from tru_cli.models import loading

log = logging.getLogger("tru")
# transformers renamed TrainingArguments.gradient_checkpointing to activation_checkpointing within 5.x;
# take the name the installed release has (5.17 on a GPU site lacked the new one).
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in
                 {f.name for f in dataclasses.fields(TrainingArguments)} else "gradient_checkpointing")


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.rows[i]


class ForgetRetainDataset(torch.utils.data.Dataset):
    """One row per forget item: its encoded sub-examples (`forget`, and `target` / `idk` when the
    method reads them, each possibly carrying a precomputed `ref_nll`), plus a retain example drawn
    by a seeded generator, so every step sees fresh retain data."""

    def __init__(self, rows: list[dict], retain: list[dict], seed: int):
        self.rows, self.retain, self.seed = rows, retain, seed
        self.epoch = 0  # set by UnlearnTrainer at each epoch's start

    def __len__(self) -> int:
        return len(self.rows)

    def longest(self) -> int:
        """Tokens of the longest sequence any step can see (the memory check sizes a step by it)."""
        seqs = [s for row in self.rows for key, v in row.items()
                for s in (v if key == "idk_by_epoch" else [v]) if isinstance(s, dict) and "input_ids" in s]
        return max(len(s["input_ids"]) for s in seqs + self.retain)

    def __getitem__(self, i: int) -> dict:
        row = dict(self.rows[i])
        variants = row.pop("idk_by_epoch", None)
        if variants:  # the IDK answer of this epoch (redrawn per epoch)
            row["idk"] = variants[self.epoch % len(variants)]
        if self.retain:
            # The retain partner depends on (seed, item, epoch), not on the order of calls, so
            # every process of a multi-process run pairs items exactly as one process does.
            rng = random.Random(f"{self.seed}:{i}:{self.epoch}")
            row["retain"] = self.retain[rng.randrange(len(self.retain))]
        return row


class CurveRecorder(TrainerCallback):
    """Keeps every logged step (loss, its parts, lr) for the run's training-curve summary."""

    def __init__(self, forward=None):
        self.rows: list[dict] = []
        self.forward = forward  # e.g. the run's wandb logger

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D401 (Trainer hook)
        if logs and "loss" in logs:
            row = {"step": state.global_step, "epoch": round(state.epoch or 0, 3), **logs}
            self.rows.append(row)
            if self.forward:
                self.forward(row)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.rows:  # one line per epoch instead of transformers' per-step dict printing
            last = self.rows[-1]
            parts = " ".join(f"{k} {v:.4g}" for k, v in last.items()
                             if k.endswith(("_nll", "_kl", "_rmu")) or k == "loss")
            log.info("epoch %d/%d  %s", round(state.epoch or 0), int(args.num_train_epochs), parts)


class StepProgress(TrainerCallback):
    """Training steps as a progress bar (or periodic log lines): ETA, last logged loss, tokens/s.
    `tokens()` gives the non-padding tokens trained on so far."""

    def __init__(self, label: str, tokens=None):
        self.label, self.tokens = label, tokens
        self._bar, self._context, self._loss = None, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self._context = progress.track(self.label, int(state.max_steps), "steps")
        self._bar = self._context.__enter__()
        self._start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])

    def on_step_begin(self, args, state, control, **kwargs):
        timing.mark("first_step")

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._start
        tokens = self.tokens(state) if self.tokens else 0
        self._bar.advance(1, loss=self._loss, **({"tokens/s": round(tokens / seconds)} if tokens and seconds else {}))

    def on_train_end(self, args, state, control, **kwargs):
        timing.mark("last_step")
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


class _EpochToDataset(TrainerCallback):
    """Tells ForgetRetainDataset the epoch, which seeds its retain draws."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None) if train_dataloader is not None else None
        for candidate in (dataset, kwargs.get("train_dataset")):
            if hasattr(candidate, "epoch"):
                candidate.epoch = int(state.epoch or 0)


class UnlearnTrainer(Trainer):
    """Trainer whose loss is the configured `objectives.Objective` over the batch's sub-batches."""

    def __init__(self, *args, objective, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        # Our loss is already reduced; let Trainer divide by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._part_sums: dict[str, float] = {}
        self._part_count = 0
        self.add_callback(_EpochToDataset())
        self.add_callback(StepProgress("unlearn", lambda state: self.tokens_seen))

    @property
    def tokens_seen(self) -> int:
        """Non-padding tokens through forward passes, for tokens/s."""
        return self.objective.tokens_seen

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, parts = self.objective(model, inputs)
        for key, value in parts.items():
            self._part_sums[key] = self._part_sums.get(key, 0.0) + float(value.detach())
        self._part_count += 1
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self._part_count and "loss" in logs:
            for key, total in self._part_sums.items():
                logs[key] = round(total / self._part_count, 4)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, *args, **kwargs)


def quiet(trainer: Trainer) -> Trainer:
    """Drop transformers' per-step dict printing (CurveRecorder logs one line per epoch), and move the
    objects alive now (imported modules, the model) out of the cyclic garbage collector's reach: the
    Trainer runs a full collection at the start of train() (accelerate's free_memory), which took
    0.2 s of a 6 s, 40-step tiny run, and later collections would walk them again. Refcounting still
    frees them; callers unfreeze after train() (measured: 10 in-process SmolLM2 trainings held 17.6 GB
    peak RSS frozen, 4.0 GB unfrozen)."""
    trainer.remove_callback(PrinterCallback)
    gc.freeze()
    return trainer


def batch_split(recipe: DictConfig, n_processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that give `recipe.batch_size` over `n_processes`."""
    per_device = max(1, min(int(recipe.per_device_batch_size), int(recipe.batch_size) // n_processes))
    accumulation = max(1, int(recipe.batch_size) // (per_device * n_processes))
    if per_device * accumulation * n_processes != int(recipe.batch_size):
        raise TruError(f"batch_size={recipe.batch_size} cannot be split evenly over {n_processes} processes "
                       f"x {per_device} per device; choose a multiple of {n_processes * per_device}")
    return per_device, accumulation


def training_args(cfg: DictConfig, recipe: DictConfig, out_dir: Path, n_processes: int = 1) -> TrainingArguments:
    """TrainingArguments from a trainer recipe (`trainer.finetune` or `trainer.unlearn`) and the device.
    The effective batch `recipe.batch_size` is kept whatever the device count."""
    # the processes actually running (a multi-process device config run in one process keeps its batch)
    per_device, accumulation = batch_split(recipe, max(n_processes, distributed.world_size()))
    mp = cfg.device.mixed_precision
    kwargs = {}
    strategy = cfg.device.get("strategy") or "single"
    if strategy == "fsdp":
        kwargs.update(fsdp=str(cfg.device.fsdp), fsdp_config=OmegaConf.to_container(cfg.device.fsdp_config))
    elif strategy == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise TruError("device=deepspeed needs the deepspeed package; pip install deepspeed, or use device=fsdp")
        kwargs["deepspeed"] = OmegaConf.to_container(cfg.device.deepspeed)
    optim = str(cfg.trainer.get("optim") or "adamw_torch_fused")
    if "8bit" in optim and (cfg.device.accelerator != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
        raise TruError(f"trainer.optim={optim} needs a CUDA GPU and bitsandbytes; use trainer.optim=adamw_torch")
    if recipe.lr_scheduler == "cosine_with_min_lr":
        kwargs["lr_scheduler_kwargs"] = {"min_lr_rate": float(recipe.min_lr_rate)}
    return TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=float(recipe.epochs),
        learning_rate=float(recipe.lr),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        warmup_steps=float(recipe.warmup_ratio),  # a float below 1 is a ratio of all steps
        weight_decay=float(recipe.weight_decay),
        lr_scheduler_type=recipe.lr_scheduler,
        max_grad_norm=float(recipe.max_grad_norm),
        logging_steps=int(cfg.trainer.logging_steps),
        logging_first_step=True,  # short runs still get a curve
        save_strategy="no",
        report_to="none",       # tru logs to wandb itself, with the run's config and metrics
        use_cpu=cfg.device.accelerator == "cpu",
        bf16=mp == "bf16",
        fp16=mp == "fp16",
        seed=int(cfg.seed),
        data_seed=int(cfg.seed),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        optim=optim,
        ddp_find_unused_parameters=False,  # every trainable weight is used (frozen ones need no sync)
        **{CHECKPOINTING: bool(cfg.trainer.get("gradient_checkpointing", False))},
        **kwargs,
    )


def fit_and_save(trainer: Trainer, tokenizer, curve: CurveRecorder, out_dir: Path, prefix: str,
                 to_save=None) -> dict:
    """Train, save `out_dir/model` (`to_save(model)` if given, e.g. LoRA adapters merged) and
    `out_dir/train_log.jsonl`; return the curve summary and time."""
    quiet(trainer)
    start = time.perf_counter()
    trainer.train()
    gc.unfreeze()  # what quiet() froze may be garbage now: in a long process (the tests) it would stay held
    seconds = time.perf_counter() - start
    if getattr(trainer, "is_fsdp_enabled", False) and to_save is None:
        # FSDP shards the weights: every rank takes part in gathering them, rank 0 writes them
        trainer.save_model(str(Path(out_dir) / "model"))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(Path(out_dir) / "model")
            (Path(out_dir) / "model" / "training_args.bin").unlink(missing_ok=True)  # a pickle; never read
            if not any((Path(out_dir) / "model").glob("*.safetensors")):  # SHARDED_STATE_DICT writes none
                raise TruError("FSDP saved no full weights; run with FSDP_STATE_DICT_TYPE=FULL_STATE_DICT "
                               "(tru's own launch sets it)")
    elif trainer.is_world_process_zero():  # one writer in a multi-process run
        model = to_save(trainer.model) if to_save else trainer.model
        loading.save(model, tokenizer, Path(out_dir) / "model")
    if trainer.is_world_process_zero():
        write_jsonl(Path(out_dir) / "train_log.jsonl", curve.rows)
    # every step taken (the curve holds only the logged ones: with logging_steps=5, a 2-step run logged step 1)
    return {**summarize_curve(curve.rows, prefix), f"{prefix}/steps": trainer.state.global_step,
            f"{prefix}/train_seconds": seconds}


def summarize_curve(rows: list[dict], prefix: str) -> dict:
    """A flat summary of the training curve for results.json (first/last loss, steps)."""
    if not rows:
        return {}
    out = {f"{prefix}/steps": rows[-1]["step"], f"{prefix}/loss_first": rows[0]["loss"],
           f"{prefix}/loss_last": rows[-1]["loss"]}
    for key in rows[-1]:
        if key.endswith(("_nll", "_kl", "_rmu")):
            out[f"{prefix}/{key}_first"] = rows[0].get(key)
            out[f"{prefix}/{key}_last"] = rows[-1][key]
    return out
