"""What a paper target will cost before anything starts (`make <target> PLAN=1`), offline: its jobs,
the memory per job from the memory plan (with the per-device batch that fits, which the run then
uses), the generator and judge requests with their tokens and price, and the device hours.

Counts the plan cannot read offline (the forget corpora are not on the machine that plans) come from
the scale's file and are printed as estimates: forget items per benchmark, tokens per training
sequence, tokens per request, training throughput."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from tru_cli.config import compose, validate_overrides
from tru_cli.errors import TruError
from tru_cli.methods import memory, objectives
from tru_cli.reproduce.spec import Job


@dataclass
class JobPlan:
    job: Job
    memory_gib: float | None  # per device; None for a job that trains nothing
    fits: bool
    per_device: int | None  # the per-device batch the run uses (largest that fits)
    train_tokens: float
    hours: float
    judge_requests: int


def plan_job(job: Job, settings: DictConfig) -> tuple[JobPlan, DictConfig]:
    try:
        validate_overrides(job.command, job.overrides)  # a bad key or value is one line naming it
    except TruError as exc:
        raise TruError(f"job {job.name}: {exc}") from None
    cfg = compose(job.command, job.overrides)
    judged = cfg.judge.backend is not None
    judge_items = int(settings.judge_items)
    # the judge asks once per forget query (UQ) and once per retain query (RQ) of each evaluated model;
    # an attack run asks the unattacked answers and each sub-attack's (languages, templates, relearning)
    if job.command == "attack":
        suite = list(cfg.attack.suite) if cfg.attack.name == "suite" else [cfg.attack.name]
        subs = sum(len(cfg.attack.settings[a].get("languages") or cfg.attack.settings[a].get("templates") or [1])
                   for a in suite)
        judge_requests = judge_items * (1 + subs) if judged else 0
    else:
        judge_requests = 2 * judge_items if judged else 0
    if job.command == "eval":
        return JobPlan(job, None, True, None, 0.0, float(settings.eval_hours), judge_requests), cfg
    parts = len(objectives.needed_parts(cfg.method))
    reference = objectives.needs_reference_model(cfg.method) and not cfg.trainer.get("lora")
    length = min(int(cfg.model.max_length), int(settings.sequence_tokens[job.benchmark]))
    budget = (float(settings.gpu_memory_gb) * 1e9 / memory.GiB if settings.gpu_memory_gb
              else 0.9 * (memory.meminfo_gib("MemTotal") or 0.0))  # as check_host stops a CPU run
    def plan_at(n: int) -> memory.Plan:
        return memory.plan(cfg, parts, reference, length=length, per_device=n, budget_gib=budget)

    # the largest per-device batch that fits, else the largest one allowed (its row then says NO)
    per_device = memory.largest_batch(cfg.trainer.unlearn, lambda n: plan_at(n).fits) or \
        memory.largest_batch(cfg.trainer.unlearn, lambda n: True)
    p = plan_at(per_device)
    tokens = float(cfg.trainer.unlearn.epochs) * int(settings.forget_items[job.benchmark]) * parts * length
    hours = tokens / float(settings.tokens_per_second) / 3600 + float(settings.eval_hours)
    return JobPlan(job, p.total, p.fits, per_device, tokens, hours, judge_requests), cfg


def generator_requests(plans: list[tuple[JobPlan, DictConfig]], settings: DictConfig) -> int:
    """One target per forget item for each distinct target set (benchmark and prompt criteria): the
    ablations without criteria need their own, the others share TRU's through the cache."""
    sets = {(p.job.benchmark, bool(cfg.method.get("criteria", True))) for p, cfg in plans
            if p.job.command != "eval" and cfg.method.get("use_targets")}
    targets = sum(int(settings.forget_items[bench]) for bench, _ in sets)
    # the translation attack has the generator translate each attacked question and its gold answer
    rewrites = sum(2 * len(cfg.attack.settings.translate.languages) * int(settings.judge_items) for p, cfg in plans
                   if p.job.command == "attack" and "translate" in (cfg.attack.get("suite") or []))
    return targets + rewrites


def summarize(plans: list[tuple[JobPlan, DictConfig]], settings: DictConfig) -> dict:
    tokens = settings.request_tokens
    price = settings.price_per_mtok
    gen = generator_requests(plans, settings)
    judge = sum(p.judge_requests for p, _ in plans)

    def cost(n: int, kind: str) -> float:
        return n * (tokens[kind].input * price.input + tokens[kind].output * price.output) / 1e6

    return {"jobs": len(plans), "generator_requests": gen, "judge_requests": judge,
            "generator_tokens": gen * (tokens.generator.input + tokens.generator.output),
            "judge_tokens": judge * (tokens.judge.input + tokens.judge.output),
            "cost_usd": cost(gen, "generator") + cost(judge, "judge"),
            "device_hours": sum(p.hours for p, _ in plans),
            "fit": all(p.fits for p, _ in plans)}
