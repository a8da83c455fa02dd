"""What every attack works with: the unlearned and the original model, their prompt formatter, the
forget items (and retain items for utility), each model's plain per-item scores, and the two ways
an attack changes the items (a prompt attack re-asks the forget items; a rewrite attack first has
the generator backend rewrite them)."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli import benchmarks
from tru_cli.attacks import probes, prompts
from tru_cli.attacks.recovery import item_logs, mean, summarize
from tru_cli.backends import CHAT_BACKENDS, chat_service
from tru_cli.backends.chat import Reject
from tru_cli.data.encoding import PromptFormatter
from tru_cli.errors import TruError
from tru_cli.models import loading


class Context:
    """The two models, their formatter, the forget items, how they are asked (`probe`), and each
    model's plain per-item scores."""

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
        self.rows, self.retain_rows = attack_items(cfg)
        self.probe = probes.of(self.rows)
        self.plain = {role: self.scores(model, self.rows)
                      for role, model in (("unlearned", self.unlearned), ("original", self.original))}

    def scores(self, model, rows: list[dict], unicode: bool = False) -> list[dict]:
        """Per attacked row: the answer and the probe's metrics (probes.py); `unicode`: ROUGE over
        words of any script, for answers in other languages."""
        return probes.score(self, model, rows, unicode)

    def retain_scores(self, model, prefix: str = "") -> dict:
        """`<prefix>retain_<metric>`: does a weight attack keep the model useful on the retain items?"""
        if not self.retain_rows:
            return {}
        probe = probes.of(self.retain_rows)
        return {f"{prefix}retain_{probe.main}": mean([s[probe.main] for s in self.scores(model, self.retain_rows)])}

    def summarize(self, name: str, attacked: list[dict], index: list[int], extra: dict | None = None) -> dict:
        return summarize(self.plain, name, attacked, index, extra, self.probe.metrics)


def attack_items(cfg: DictConfig) -> tuple[list[dict], list[dict]]:
    """(forget, retain) rows of the benchmark's attack set `attack.forget_items` (null: its default)."""
    return benchmarks.of(cfg.benchmark).attack_sets(cfg.benchmark, cfg.eval.max_items, cfg.attack.get("forget_items"))


def prompt_attack(ctx: Context, name: str, rewrite, unicode: bool = False) -> tuple[dict, list[dict]]:
    """Re-ask every forget item as `rewrite(i, row)` gives it (the row with its question rewritten,
    `history` or `prefill` added, or its `answer` replaced by the reference to score against) and
    score the unlearned model's answers."""
    index = list(range(len(ctx.rows)))
    asked = [{**r, **rewrite(i, r)} for i, r in enumerate(ctx.rows)]
    attacked = ctx.scores(ctx.unlearned, asked, unicode=unicode)
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
