"""WMDP (cais/wmdp, Li et al. 2024): the bio or cyber forget and retain corpora as the unlearning
data; zero-shot multiple-choice accuracy on the domain's questions (`wmdp/<domain>_acc`, lower after
unlearning, 25% is chance) and MMLU for utility (`mmlu/acc` over all subjects as lm-eval's `mmlu`
group weights them, and `mmlu/<subject>_acc` for `benchmark.mmlu_subjects`), through
lm-evaluation-harness (metrics/mcq.py). A question file absent from benchmark.data_dir makes its
metric missing, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.benchmarks._corpus import *  # noqa: F403 (the corpus half of the interface)
from tru_cli.data import items, sources
from tru_cli.data.files import write_jsonl
from tru_cli.errors import TruError
from tru_cli.metrics import mcq, shuffle

log = logging.getLogger("tru")
USES_RETAIN_LOGS = False  # accuracies need no retain model
TARGET_IS_BACKBONE = True  # hazardous knowledge from pretraining: a published model is unlearned as it is
HEADLINE = ["wmdp/bio_acc", "wmdp/cyber_acc", "mmlu/acc"]


def evaluate(model, tok, cfg: DictConfig, log_dir: Path, retain_logs: str | None = None,
             self_reference: bool = False) -> tuple[dict, list]:
    metrics, logs = _accuracies(model, tok, cfg)
    for name, rows in logs.items():
        write_jsonl(Path(log_dir) / f"{name}.jsonl", rows)
    return metrics, []


def _accuracies(model, tok, cfg: DictConfig) -> tuple[dict, dict]:
    bench, batch = cfg.benchmark, int(cfg.benchmark.wmdp.batch_size)
    domain = str(bench.domain)
    metrics: dict = {f"wmdp/{domain}_acc": None}
    logs: dict = {}
    questions = sources.capped(sources.load_role(bench, "mcq"), cfg.eval.max_items)
    if questions is None:
        log.warning("wmdp/%s_acc is missing: %s", domain, sources.absent(bench, "mcq"))
    else:
        result = mcq.accuracy(model, tok, [mcq.wmdp_task(questions, domain)], batch)[f"wmdp_{domain}"]
        metrics.update({f"wmdp/{domain}_acc": result["acc"], f"wmdp/{domain}_acc_stderr": result["acc_stderr"],
                        f"wmdp/{domain}_items": result["n"]})
        logs[f"wmdp_{domain}"] = result["items"]
        metrics.update(_shuffled(model, tok, questions, batch, bench, lambda rows: [mcq.wmdp_task(rows, domain)],
                                 f"wmdp/{domain}_"))
    if not bench.wmdp.mmlu:
        return metrics, logs
    metrics["mmlu/acc"] = None
    rows = sources.load_role(bench, "mmlu")
    if rows is None:
        log.warning("mmlu/acc is missing: %s", sources.absent(bench, "mmlu"))
        return metrics, logs
    subjects = set(bench.get("mmlu_subjects") or [])
    if cfg.eval.max_items:  # a cap per subject keeps every subject in the overall value
        rows = [r for s in sorted({r.get("subject") for r in rows}) for r in
                [x for x in rows if x.get("subject") == s][: int(cfg.eval.max_items)]]
    result = mcq.mmlu_accuracy(model, tok, rows, batch)
    metrics.update(_shuffled(model, tok, rows, batch, bench, mcq.mmlu_tasks, "mmlu/"))
    metrics.update({"mmlu/acc": result["overall"]["acc"], "mmlu/acc_stderr": result["overall"]["acc_stderr"],
                    "mmlu/items": result["overall"]["n"]})
    for key, sub in result["subjects"].items():
        if key in subjects:
            metrics[f"mmlu/{key}_acc"] = sub["acc"]
    for key in subjects - set(result["subjects"]):
        log.warning("mmlu/%s_acc is missing: the MMLU file has no subject %s", key, key)
        metrics[f"mmlu/{key}_acc"] = None
    logs["mmlu"] = [{**item, "subject": key} for key, sub in result["subjects"].items() for item in sub["items"]]
    return metrics, logs


def _shuffled(model, tok, rows: list[dict], batch: int, bench: DictConfig, tasks_of, prefix: str) -> dict:
    """`<prefix>shuffled_{acc_seed<n>,acc_mean,acc_std,flips}` (wmdp/bio_shuffled_acc_mean, mmlu/shuffled_flips)
    over `benchmark.wmdp.option_seeds`
    (metrics/shuffle.py); nothing when no seed is set."""
    seeds = [int(s) for s in bench.wmdp.get("option_seeds") or []]
    if not seeds:
        return {}
    correct = {}
    for seed in seeds:
        asked = shuffle.permuted(rows, seed)
        results = mcq.accuracy(model, tok, tasks_of(asked), batch)
        by_question = {}  # tasks may regroup rows (MMLU by subject): match items back by question
        for result in results.values():
            for item in result["items"]:
                by_question.setdefault(item["question"], []).append(item["correct"])
        correct[seed] = [by_question[r["question"]].pop(0) for r in asked]
    return {f"{prefix}shuffled_{k}": v for k, v in shuffle.summarize(correct).items()}


def judge_sets(log_dir: Path) -> None:
    """None: saved multiple-choice logs hold no free-text answers (the judge asks judge_queries)."""
    return None


def judge_queries(bench: DictConfig, max_items: int | None) -> dict[str, list[dict]]:
    """The judge's queries (the paper publishes none): the WMDP questions' stems without their
    options, as in-scope queries (UQ), and the stems of the MMLU subjects next to the domain
    (`benchmark.mmlu_subjects`), as retention queries (RQ)."""
    domain = str(bench.domain)
    questions = sources.load_role(bench, "mcq")
    if questions is None:
        log.warning("judge: no WMDP-%s questions (%s): judge/uq is missing", domain, sources.absent(bench, "mcq"))
    subjects = set(bench.get("mmlu_subjects") or [])
    mmlu = [r for r in sources.load_role(bench, "mmlu") or [] if r.get("subject") in subjects]
    if not mmlu:
        log.warning("judge: no MMLU questions of %s: judge/rq is missing", ", ".join(sorted(subjects)) or "any subject")
    return {"forget": items.judge_queries(questions, f"wmdp_{domain}", max_items),
            "retain": items.judge_queries(mmlu, "mmlu", max_items)}


def attack_sets(bench: DictConfig, max_items: int | None, which: str | None = None) -> tuple[list[dict], list[dict]]:
    """(forget, retain) rows that `tru attack` re-asks: the WMDP questions as multiple choice, scored
    as the evaluation scores them (lm-eval's zero-shot prompt, accuracy: its recovery is the attack's),
    and the MMLU questions of `benchmark.mmlu_subjects` as the retain rows (utility under a weight attack)."""
    if which not in (None, "questions"):
        raise TruError(f"attack.forget_items={which}; benchmark={bench.name} has one attack set: questions (its "
                       "multiple-choice questions)")
    domain = str(bench.domain)
    questions = sources.capped(sources.load_role(bench, "mcq"), max_items)
    if not questions:
        raise TruError(f"tru attack on benchmark={bench.name} re-asks its questions: {sources.absent(bench, 'mcq')}")
    subjects = sorted(bench.get("mmlu_subjects") or []) if bench.wmdp.mmlu else []
    pool = (sources.load_role(bench, "mmlu") or []) if subjects else []
    mmlu = [r for s in subjects for r in sources.capped([r for r in pool if r.get("subject") == s], max_items) or []]
    forget = [{"id": f"wmdp_{domain}-{i}", **r, "kind": "choice", "subject": mcq.WMDP_SUBJECTS[domain]}
              for i, r in enumerate(questions)]
    retain = [{"id": f"mmlu-{i}", **r, "kind": "choice", "subject": mcq.mmlu_subject(r["subject"])}
              for i, r in enumerate(mmlu)]
    return forget, retain
