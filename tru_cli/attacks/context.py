"""What every attack works with: the unlearned and the original model, their prompt formatter, the
forget items (and retain items for utility), each model's plain per-item scores, and the two ways
an attack is scored (a prompt attack re-asks the forget questions; a rewrite attack first has the
generator backend rewrite them)."""

from __future__ import annotations

import math

from omegaconf import DictConfig

from tru_cli import benchmarks
from tru_cli.attacks import prompts
from tru_cli.attacks.recovery import item_logs, mean, summarize
from tru_cli.backends import CHAT_BACKENDS, chat_service
from tru_cli.backends.chat import Reject
from tru_cli.data.encoding import PromptFormatter
from tru_cli.errors import TruError
from tru_cli.metrics import scoring, tofu
from tru_cli.models import loading


class Context:
    """The two models, their formatter, the forget items, and each model's plain per-item scores."""

    def __init__(self, cfg: DictConfig, unlearned: str, original: str):
        self.cfg = cfg
        self.original_path, self.unlearned_path = original, unlearned
        self.usage: dict = {}  # generator counts of rewritten questions (translate, paraphrase)
        self.device = loading.device_of(cfg.device)
        self.unlearned, tok = loading.load(unlearned, cfg.device)
        self.original, _ = loading.load(original, cfg.device)
        for model in (self.unlearned, self.original):
            model.to(self.device).eval()
        self.fmt = PromptFormatter(tok, cfg.model)
        self.rows, self.retain_rows = benchmarks.of(cfg.benchmark).attack_sets(cfg.benchmark, cfg.eval.max_items)
        self.plain = {role: self.scores(model, [self.fmt.prompt_ids(r["question"]) for r in self.rows],
                                        [r["answer"] for r in self.rows])
                      for role, model in (("unlearned", self.unlearned), ("original", self.original))}

    def scores(self, model, prompt_ids: list[list[int]], references: list[str], unicode: bool = False) -> list[dict]:
        """Per item: the greedy answer, its ROUGE recalls against the reference (`unicode`: words of
        any script, for answers in other languages), and the probability of the reference given the
        same prompt (exp of minus its mean token NLL)."""
        size = int(self.cfg.eval.batch_size)
        gens = scoring.greedy_from_prompts(model, self.fmt, prompt_ids, int(self.cfg.eval.max_new_tokens), size)
        nlls = scoring.encoded_nlls(model, self.fmt, [self.fmt.encode_prompt(p, ref) for p, ref in
                                                      zip(prompt_ids, references, strict=True)], size)
        rouge = tofu.rouge_recalls(references, gens, unicode=unicode)
        return [{"generation": g, **r, "prob": math.exp(-total / max(count, 1))}
                for g, r, (total, count) in zip(gens, rouge, nlls, strict=True)]

    def retain_rouge(self, model) -> float:
        """Retain ROUGE-L recall: does a weight attack keep the model useful?"""
        refs = [r["answer"] for r in self.retain_rows]
        gens = scoring.greedy_from_prompts(model, self.fmt, [self.fmt.prompt_ids(r["question"]) for r in self.retain_rows],
                                           int(self.cfg.eval.max_new_tokens), int(self.cfg.eval.batch_size))
        return mean([r["rougeL_recall"] for r in tofu.rouge_recalls(refs, gens)])

    def summarize(self, name: str, attacked: list[dict], index: list[int], extra: dict | None = None) -> dict:
        return summarize(self.plain, name, attacked, index, extra)


def prompt_attack(ctx: Context, name: str, prompt_of, reference_of=None, references: list[str] | None = None,
                  unicode: bool = False) -> tuple[dict, list[dict]]:
    """Re-ask every forget item through `prompt_of(i, row)` (prompt ids) and score the unlearned
    model's answers against `references` or `reference_of(row)` (default: the answer)."""
    index = list(range(len(ctx.rows)))
    refs = references or [reference_of(r) if reference_of else r["answer"] for r in ctx.rows]
    attacked = ctx.scores(ctx.unlearned, [prompt_of(i, r) for i, r in enumerate(ctx.rows)], refs, unicode=unicode)
    return ctx.summarize(name, attacked, index), item_logs(ctx.rows, attacked)


def rewritten(ctx: Context, acfg: DictConfig, attack: str, field: str, instruction: str,
              text: str = "question") -> list[str]:
    """The attacked questions (or, with `text="answer"`, their gold answers): the benchmark's `field`
    when every item has it (`attack.source=auto` or `field`), else each item's `text` rewritten by
    the generator backend (`source=generator`), through the same cache and retries as targets."""
    source = acfg.get("source", "auto")
    if source == "field" or (source == "auto" and all(r.get(field) for r in ctx.rows)):
        hint = "or set generator=openai|hf to rewrite the questions with a model"
        return [prompts.field_or_fail(r, field, attack, hint) for r in ctx.rows]
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
                        {"role": "user", "content": r[text]}] for r in ctx.rows], accept)
    missing = sum(q is None for q in out)
    if missing:
        raise TruError(f"attack={attack}: the generator gave no usable rewrite for {missing} of "
                       f"{len(out)} {text}s (answers so far are cached; rerun to retry)")
    key = f"attack/{attack}/generator" if text == "question" else f"attack/{attack}/{text}_generator"
    for name, value in service.summary(key).items():  # questions and answers of one attack add up
        ctx.usage[name] = ctx.usage.get(name, 0) + value
    return out
