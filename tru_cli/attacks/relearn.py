"""The relearning attack: fine-tune a copy of the unlearned model on a subset of the forget items
(evaluated on the disjoint rest) or on related text (evaluated on every forget item), full or with
LoRA, and score it after each of `attack.steps` optimizer steps: a recovery curve."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

from omegaconf import OmegaConf

from tru_cli.attacks import probes
from tru_cli.attacks.recovery import item_logs
from tru_cli.data import files
from tru_cli.data.encoding import QACollator
from tru_cli.errors import TruError
from tru_cli.methods import lora


def relearn_split(n: int, subset: float) -> tuple[list[int], list[int]]:
    """(train, eval) item positions: a `subset` fraction of the forget items, spread evenly over the
    set (so every author contributes), to relearn on, and the disjoint rest to evaluate."""
    if not 0 < subset < 1:
        raise TruError(f"attack.subset={subset}; choose a fraction between 0 and 1 (0.5 = every other item)")
    k = max(1, min(n - 1, round(n * subset)))
    train = sorted({int(i * n / k) for i in range(k)})
    return train, [i for i in range(n) if i not in set(train)]


def relearn_texts(ctx, acfg) -> list[dict]:
    """Encoded relearning data: the passages of `attack.text_file` (`attack.data=text`: public text
    related to the forgotten knowledge, as in Hu et al.'s benign relearning; JSON/JSONL rows with
    `text`, or a .txt file)."""
    path = Path(str(acfg.text_file or ""))
    if not acfg.text_file or not path.is_file():
        raise TruError(f"attack.data=text needs attack.text_file=FILE (JSON, JSONL or .txt of related text); "
                       f"got {acfg.text_file}")
    rows = [r for r in files.read_records(path) if str(r.get("text") or "").strip()]
    if not rows:
        raise TruError(f"attack.text_file={path} has no rows with a 'text' field")
    return [ctx.fmt.encode_text(str(r["text"])) for r in rows]


def adapters(acfg):
    """The attack's LoRA settings in the shape of `trainer.lora` (Łucki et al. relearn with LoRA on
    every projection)."""
    return OmegaConf.create({"r": int(acfg.lora_rank), "alpha": int(acfg.lora_alpha), "dropout": 0.0,
                             "target_modules": list(acfg.lora_target_modules)})


def run(ctx, acfg):
    # deferred: the Trainer pulls in peft, datasets and bitsandbytes (seconds); prompt attacks never need it
    from transformers import Trainer

    from tru_cli.methods.trainer import ListDataset, StepProgress, quiet, training_args

    data = acfg.get("data", "forget")
    if data == "forget":
        train_idx, eval_idx = relearn_split(len(ctx.rows), float(acfg.get("subset", 0.5)))
        train = ListDataset([probes.training_example(ctx.fmt, ctx.rows[i]) for i in train_idx])
    elif data == "text":
        train_idx, eval_idx = [], list(range(len(ctx.rows)))
        train = ListDataset(relearn_texts(ctx, acfg))
    else:
        raise TruError(f"attack.data={data}; choose forget (a subset of the forget set) or text (attack.text_file)")
    asked = [ctx.rows[i] for i in eval_idx]
    metrics, logs = {}, []
    for steps in sorted(int(s) for s in acfg.steps):
        model = copy.deepcopy(ctx.unlearned).train()
        if steps:
            if acfg.lora:  # checkpointing, as training_args below sets it, needs inputs that require grad
                model = lora.apply(model, adapters(acfg), bool(ctx.cfg.trainer.get("gradient_checkpointing")),
                                   key="attack.lora_target_modules")
            args = training_args(ctx.cfg, acfg.trainer, Path(ctx.cfg.paths.store) / "tmp_relearn")
            args.max_steps = steps
            args.include_num_input_tokens_seen = "non_padding"  # tokens/s of the progress bar
            quiet(Trainer(model=model, args=args, train_dataset=train, data_collator=QACollator(ctx.fmt.tok.pad_token_id),
                          callbacks=[StepProgress(f"relearn {steps} steps", lambda state: state.num_input_tokens_seen)])).train()
            gc.unfreeze()  # as fit_and_save: let the collector see what quiet() froze
            if acfg.lora:
                model = model.merge_and_unload()  # the attacked model is the merged one
        model.eval()
        attacked = ctx.scores(model, asked)
        metrics.update(ctx.summarize(f"relearn/step_{steps}", attacked, eval_idx))
        logs += item_logs(asked, attacked, step=steps)
    last = f"attack/relearn/step_{max(int(s) for s in acfg.steps)}/"
    metrics.update({f"attack/relearn/{key.removeprefix(last)}": value for key, value in list(metrics.items())
                    if key.startswith(last)})  # the attack's row: its last step
    metrics["attack/relearn/relearn_items"] = len(train)
    metrics.update({f"attack/relearn/{k}": v for k, v in ctx.retain_scores(model).items()})  # after the last step
    metrics.update({f"attack/relearn/{k}": v for k, v in ctx.retain_scores(ctx.unlearned, "unlearned_").items()})
    return metrics, logs
