"""tru attack: attack an unlearned model, re-evaluate the forget set, and report how much of the
forgetting came back: recovery = (m_attacked - m_unlearned) / (m_original - m_unlearned), with
m = forget ROUGE-L recall of greedy answers (the benchmark's main forget metric).

Weight attacks (relearn, quantize) change a copy of the unlearned model; prompt attacks (translate,
jailbreak, paraphrase, prefill, icl) change the questions. m_unlearned and m_original are the plain
evaluations of the two models on the same items as the attacked one.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.attacks import prompts, quantize
from tru_cli.attacks.recovery import recovery
from tru_cli.data import benchmark
from tru_cli.data.encoding import PromptFormatter
from tru_cli.data.files import write_jsonl
from tru_cli.errors import TruError
from tru_cli.metrics import scoring, tofu

log = logging.getLogger("tru")
ALL = ("relearn", "quantize", "translate", "jailbreak", "paraphrase", "prefill", "icl")


class Context:
    """The two models, their formatter, the forget items, and each model's plain per-item scores."""

    def __init__(self, cfg: DictConfig, unlearned: str, original: str):
        from tru_cli.models import loading

        self.cfg = cfg
        self.original_path, self.unlearned_path = original, unlearned
        self.usage: dict = {}  # generator counts of rewritten questions (translate, paraphrase)
        self.device = loading.device_of(cfg.device)
        self.unlearned, tok = loading.load(unlearned, cfg.device)
        self.original, _ = loading.load(original, cfg.device)
        for model in (self.unlearned, self.original):
            model.to(self.device).eval()
        self.fmt = PromptFormatter(tok, cfg.model)
        sets = benchmark.eval_sets(cfg.benchmark, cfg.eval.max_items)
        self.rows, self.retain_rows = sets["forget"], sets["retain"]
        self.plain = {role: self.scores(model, [self.fmt.prompt_ids(r["question"]) for r in self.rows],
                                        [r["answer"] for r in self.rows])
                      for role, model in (("unlearned", self.unlearned), ("original", self.original))}

    def scores(self, model, prompt_ids: list[list[int]], references: list[str]) -> list[dict]:
        """Per item: the greedy answer, its ROUGE recalls against the reference, and the probability
        of the reference given the same prompt (exp of minus its mean token NLL)."""
        size = int(self.cfg.eval.batch_size)
        gens = scoring.greedy_from_prompts(model, self.fmt, prompt_ids, int(self.cfg.eval.max_new_tokens), size)
        nlls = scoring.encoded_nlls(model, self.fmt, [self.fmt.encode_prompt(p, ref) for p, ref in
                                                      zip(prompt_ids, references, strict=True)], size)
        return [{"generation": g, **r, "prob": math.exp(-total / max(count, 1))}
                for g, r, (total, count) in zip(gens, tofu.rouge_recalls(references, gens), nlls, strict=True)]

    def retain_rouge(self, model) -> float:
        """Retain ROUGE-L recall: does a weight attack keep the model useful?"""
        refs = [r["answer"] for r in self.retain_rows]
        gens = scoring.greedy_from_prompts(model, self.fmt, [self.fmt.prompt_ids(r["question"]) for r in self.retain_rows],
                                           int(self.cfg.eval.max_new_tokens), int(self.cfg.eval.batch_size))
        return _mean([r["rougeL_recall"] for r in tofu.rouge_recalls(refs, gens)])


def item_logs(rows: list[dict], attacked: list[dict], **extra) -> list[dict]:
    """Per-item log rows: the item, the attacked generation and its scores."""
    return [{"id": r.get("id"), "question": r["question"], "answer": r["answer"], **extra, **a}
            for r, a in zip(rows, attacked, strict=True)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# Forget metrics per item, and the name of each one's recovery (`recovery` is the main metric's).
FORGET_METRICS = {"rougeL_recall": "recovery", "prob": "forget_prob_recovery"}


def summarize(ctx: Context, name: str, attacked: list[dict], index: list[int], extra: dict | None = None) -> dict:
    """attack/<name>/... metrics over the attacked items `index` (positions in ctx.rows)."""
    out = {}
    for metric, recovery_name in FORGET_METRICS.items():
        m_att = _mean([a[metric] for a in attacked])
        m_unl = _mean([ctx.plain["unlearned"][i][metric] for i in index])
        m_orig = _mean([ctx.plain["original"][i][metric] for i in index])
        out.update({f"attack/{name}/forget_{metric}": m_att,
                    f"attack/{name}/unlearned_forget_{metric}": m_unl,
                    f"attack/{name}/original_forget_{metric}": m_orig,
                    f"attack/{name}/{recovery_name}": recovery(m_att, m_unl, m_orig)})
    for key, value in (extra or {}).items():
        out[f"attack/{name}/{key}"] = value
    return out


def _prompt_attack(ctx, name, prompt_of, reference_of=None) -> tuple[dict, list[dict]]:
    index = list(range(len(ctx.rows)))
    refs = [reference_of(r) if reference_of else r["answer"] for r in ctx.rows]
    attacked = ctx.scores(ctx.unlearned, [prompt_of(i, r) for i, r in enumerate(ctx.rows)], refs)
    return summarize(ctx, name, attacked, index), item_logs(ctx.rows, attacked)


def rewritten(ctx, acfg, attack: str, field: str, instruction: str) -> list[str]:
    """The attacked questions: the benchmark's `field` when every item has it (`attack.source=auto`
    or `field`), else each forget question rewritten by the generator backend (`source=generator`),
    through the same cache and retries as targets."""
    source = acfg.get("source", "auto")
    if source == "field" or (source == "auto" and all(r.get(field) for r in ctx.rows)):
        hint = "or set generator=openai|hf to rewrite the questions with a model"
        return [prompts.field_or_fail(r, field, attack, hint) for r in ctx.rows]
    from tru_cli.backends import CHAT_BACKENDS, chat_service
    from tru_cli.backends.chat import Reject

    if ctx.cfg.generator.backend not in CHAT_BACKENDS:
        raise TruError(f"attack={attack}: the forget items have no '{field}' and generator="
                       f"{ctx.cfg.generator.name} cannot rewrite questions; use generator=openai or generator=hf")
    service = chat_service(ctx.cfg.generator, "generator", ctx.cfg.device, lambda: ctx.original_path, attack)

    def accept(i, reply):
        text = reply.content.split("</think>")[-1].strip()
        if not text:
            raise Reject("empty")
        return text

    out = service.run([[{"role": "system", "content": instruction},
                        {"role": "user", "content": r["question"]}] for r in ctx.rows], accept)
    missing = sum(q is None for q in out)
    if missing:
        raise TruError(f"attack={attack}: the generator gave no usable rewrite for {missing} of "
                       f"{len(out)} questions (answers so far are cached; rerun to retry)")
    ctx.usage.update(service.summary(f"attack/{attack}/generator"))
    return out


def attack_paraphrase(ctx, acfg):
    questions = rewritten(ctx, acfg, "paraphrase", "paraphrased_question", prompts.PARAPHRASE)
    metrics, logs = _prompt_attack(ctx, "paraphrase", lambda i, r: ctx.fmt.prompt_ids(questions[i]))
    return metrics, [{**row, "attacked_question": q} for row, q in zip(logs, questions, strict=True)]


def attack_translate(ctx, acfg):
    metrics, logs = {}, []
    for lang in acfg.languages:
        questions = rewritten(ctx, acfg, "translate", f"question_{lang}", prompts.translation(lang))
        m, lg = _prompt_attack(ctx, f"translate_{lang}", lambda i, r, q=questions: ctx.fmt.prompt_ids(q[i]))
        metrics.update(m)
        logs += [{**row, "language": lang, "attacked_question": q} for row, q in zip(lg, questions, strict=True)]
    return {**metrics, **_aggregate(metrics, "translate", [f"translate_{lang}" for lang in acfg.languages])}, logs


def _aggregate(metrics: dict, name: str, parts: list[str]) -> dict:
    """attack/<name>/... as the mean over its sub-attacks (languages, templates) of each metric."""
    out = {}
    for metric, recovery_name in FORGET_METRICS.items():
        values = {kind: _mean([metrics[f"attack/{p}/{kind}forget_{metric}"] for p in parts])
                  for kind in ("", "unlearned_", "original_")}
        out.update({f"attack/{name}/{kind}forget_{metric}": v for kind, v in values.items()})
        out[f"attack/{name}/{recovery_name}"] = recovery(values[""], values["unlearned_"], values["original_"])
    return out


def attack_jailbreak(ctx, acfg):
    metrics, logs, means = {}, [], {}
    for template in acfg.templates:
        if template not in prompts.JAILBREAKS:
            raise TruError(f"attack.templates has '{template}'; choose from {', '.join(prompts.JAILBREAKS)}")
        text = prompts.JAILBREAKS[template]
        m, lg = _prompt_attack(ctx, f"jailbreak_{template}",
                               lambda i, r, text=text: ctx.fmt.prompt_ids(text.format(question=r["question"])))
        metrics.update(m)
        means[template] = m[f"attack/jailbreak_{template}/forget_rougeL_recall"]
        logs += [{**row, "template": template} for row in lg]
    out = _aggregate(metrics, "jailbreak", [f"jailbreak_{t}" for t in acfg.templates])
    best = max(means, key=means.get)
    out["attack/jailbreak/best_template_recovery"] = metrics[f"attack/jailbreak_{best}/recovery"]
    return {**metrics, **out}, logs


def attack_prefill(ctx, acfg):
    words = int(acfg.prefill_words)
    return _prompt_attack(ctx, "prefill",
                          lambda i, r: ctx.fmt.prompt_ids(r["question"], prefill=prompts.split_answer(r["answer"], words)[0]),
                          reference_of=lambda r: prompts.split_answer(r["answer"], words)[1] or r["answer"])


def attack_icl(ctx, acfg):
    k = int(acfg.shots)
    return _prompt_attack(ctx, "icl", lambda i, r: ctx.fmt.prompt_ids(
        r["question"], history=prompts.icl_shots(ctx.rows, i, k)))


def attack_quantize(ctx, acfg):
    bits, group = int(acfg.bits), int(acfg.group_size)  # method and bits were checked by run()
    index = list(range(len(ctx.rows)))
    questions = [ctx.fmt.prompt_ids(r["question"]) for r in ctx.rows]
    refs = [r["answer"] for r in ctx.rows]
    if acfg.method == "rtn":
        quantized = copy.deepcopy(ctx.unlearned)
        quantize.quantize_model_(quantized, bits, group)
        control = copy.deepcopy(ctx.original)  # the quantized original: what rounding alone does
        quantize.quantize_model_(control, bits, group)
    else:  # GPTQ and AWQ calibrate on retain text, never on the forget set they would leak
        calibration = [benchmark.row_text(r) for r in ctx.retain_rows[:int(acfg.calibration_items)]]
        if not calibration and acfg.method != "bnb":
            raise TruError(f"attack.method={acfg.method} calibrates on retain text and this benchmark's retain "
                           f"set is empty; add its retain file or use attack.method=rtn|bnb")
        quantized, control = (quantize.load_quantized(acfg.method, path, bits, group, ctx.cfg.device, calibration)
                              for path in (ctx.unlearned_path, ctx.original_path))
        for model in (quantized, control):  # as loading.load sets it: batched generation pads
            model.generation_config.pad_token_id = ctx.unlearned.generation_config.pad_token_id
    attacked = ctx.scores(quantized, questions, refs)
    control_scores = ctx.scores(control, questions, refs)
    extra = {"bits": bits, "original_quantized_forget_rougeL_recall": _mean([c["rougeL_recall"] for c in control_scores]),
             "retain_rougeL_recall": ctx.retain_rouge(quantized),
             "unlearned_retain_rougeL_recall": ctx.retain_rouge(ctx.unlearned)}
    return summarize(ctx, "quantize", attacked, index, extra), item_logs(ctx.rows, attacked)


def relearn_split(n: int, subset: float) -> tuple[list[int], list[int]]:
    """(train, eval) item positions: a `subset` fraction of the forget items, spread evenly over the
    set (so every author contributes), to relearn on, and the disjoint rest to evaluate."""
    if not 0 < subset < 1:
        raise TruError(f"attack.subset={subset}; choose a fraction between 0 and 1 (0.5 = every other item)")
    k = max(1, min(n - 1, round(n * subset)))
    train = sorted({int(i * n / k) for i in range(k)})
    return train, [i for i in range(n) if i not in set(train)]


def relearn_texts(ctx, acfg) -> list[dict]:
    """Encoded relearning data: forget items (`attack.data=forget`) or the passages of
    `attack.text_file` (`attack.data=text`: public text related to the forgotten knowledge, as in
    Hu et al.'s benign relearning; JSON/JSONL rows with `text`, or a .txt file)."""
    from tru_cli.data import files

    path = Path(str(acfg.text_file or ""))
    if not acfg.text_file or not path.is_file():
        raise TruError(f"attack.data=text needs attack.text_file=FILE (JSON, JSONL or .txt of related text); "
                       f"got {acfg.text_file}")
    rows = [r for r in files.read_records(path) if str(r.get("text") or "").strip()]
    if not rows:
        raise TruError(f"attack.text_file={path} has no rows with a 'text' field")
    return [ctx.fmt.encode_text(str(r["text"])) for r in rows]


def attack_relearn(ctx, acfg):
    """Fine-tune a copy of the unlearned model on a subset of the forget items (evaluated on the
    disjoint rest) or on related text (evaluated on every forget item)."""
    from transformers import Trainer

    from tru_cli.data.encoding import QACollator
    from tru_cli.methods.trainer import ListDataset, quiet, training_args

    data = acfg.get("data", "forget")
    if data == "forget":
        train_idx, eval_idx = relearn_split(len(ctx.rows), float(acfg.get("subset", 0.5)))
        train = ListDataset([ctx.fmt.encode(ctx.rows[i]["question"], ctx.rows[i]["answer"]) for i in train_idx])
    elif data == "text":
        train_idx, eval_idx = [], list(range(len(ctx.rows)))
        train = ListDataset(relearn_texts(ctx, acfg))
    else:
        raise TruError(f"attack.data={data}; choose forget (a subset of the forget set) or text (attack.text_file)")
    questions = [ctx.fmt.prompt_ids(ctx.rows[i]["question"]) for i in eval_idx]
    refs = [ctx.rows[i]["answer"] for i in eval_idx]
    metrics, logs = {}, []
    for steps in sorted(int(s) for s in acfg.steps):
        model = copy.deepcopy(ctx.unlearned).train()
        if steps:
            if acfg.lora:
                model = _with_lora(model, acfg)
            args = training_args(ctx.cfg, acfg.trainer, Path(ctx.cfg.paths.store) / "tmp_relearn")
            args.max_steps = steps
            quiet(Trainer(model=model, args=args, train_dataset=train,
                          data_collator=QACollator(ctx.fmt.tok.pad_token_id))).train()
            if acfg.lora:
                model = model.merge_and_unload()  # the attacked model is the merged one
        model.eval()
        attacked = ctx.scores(model, questions, refs)
        step_metrics = summarize(ctx, f"relearn/step_{steps}", attacked, eval_idx)
        metrics.update(step_metrics)
        logs += item_logs([ctx.rows[i] for i in eval_idx], attacked, step=steps)
    last = max(int(s) for s in acfg.steps)
    for key in ("forget_rougeL_recall", "unlearned_forget_rougeL_recall", "original_forget_rougeL_recall", "recovery",
                "forget_prob", "unlearned_forget_prob", "original_forget_prob", "forget_prob_recovery"):
        metrics[f"attack/relearn/{key}"] = metrics[f"attack/relearn/step_{last}/{key}"]
    metrics["attack/relearn/relearn_items"] = len(train)
    metrics["attack/relearn/retain_rougeL_recall"] = ctx.retain_rouge(model)  # after the last step
    metrics["attack/relearn/unlearned_retain_rougeL_recall"] = ctx.retain_rouge(ctx.unlearned)
    return metrics, logs


def _with_lora(model, acfg):
    """LoRA adapters on the configured modules (Łucki et al. relearn with LoRA on every projection)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(acfg.lora_rank), lora_alpha=int(acfg.lora_alpha), lora_dropout=0.0,
                        target_modules=list(acfg.lora_target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


ATTACKS = {"relearn": attack_relearn, "quantize": attack_quantize, "translate": attack_translate,
           "jailbreak": attack_jailbreak, "paraphrase": attack_paraphrase, "prefill": attack_prefill,
           "icl": attack_icl}


def run(cfg: DictConfig, recorder) -> None:
    from tru_cli.stages import artifacts

    acfg = cfg.attack
    names = list(acfg.suite) if acfg.name == "suite" else [acfg.name]
    if "quantize" in names:  # fail before loading anything
        qcfg = acfg if acfg.name == "quantize" else acfg.settings.quantize
        if qcfg.method in ("gptq", "awq") and int(qcfg.calibration_items) < 1:
            raise TruError(f"attack.calibration_items={qcfg.calibration_items}; {qcfg.method} needs at least "
                           f"1 retain item to calibrate on (128 is the default)")
        quantize.check_method(qcfg.method, qcfg.bits, cfg.device.accelerator == "cuda")
    unlearned = cfg.model.path or artifacts.unlearned(cfg, artifacts.finetuned(cfg, "full"),
                                                      artifacts.targets(cfg) if cfg.method.use_targets else None)[0]
    original = acfg.reference_model or artifacts.finetuned(cfg, "full")
    recorder.add_artifact("unlearned_model", unlearned)
    recorder.add_artifact("reference_model", original)
    ctx = Context(cfg, str(unlearned), str(original))
    for name in names:
        sub = acfg if acfg.name != "suite" else acfg.settings[name]
        log.info("attack %s", name)
        metrics, logs = ATTACKS[name](ctx, sub)
        recorder.add_metrics({k: v for k, v in metrics.items() if v is not None})
        write_jsonl(recorder.run_dir / "logs" / f"attack_{name}.jsonl", logs)
    recorder.add_metrics(ctx.usage)
    recorder.add_artifact("logs", recorder.run_dir / "logs")
    _table(recorder.metrics, names)


def _table(metrics: dict, names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="attacks: forget ROUGE-L recall and recovery of the forgetting")
    for col in ("attack", "unlearned", "attacked", "original", "recovery"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for name in names:
        cells = [metrics.get(f"attack/{name}/{k}") for k in
                 ("unlearned_forget_rougeL_recall", "forget_rougeL_recall", "original_forget_rougeL_recall", "recovery")]
        table.add_row(name, *("-" if c is None else f"{c:.3f}" for c in cells))
    Console().print(table)
