"""The inputs a stage needs, found or built once through the store: finetuned target and retain
models, targets, unlearned models, evaluations. `tru pipeline` is these calls in order; `tru unlearn`
and `tru eval` use them to run with no arguments on the embedded default.

Each `build_*` function does one stage's work into a folder (a store entry, or a command's own run
dir) by calling the libraries: methods/ (finetune, unlearn), targets/, benchmarks/ (evaluation) and
metrics/judge.py. The find-or-build functions hand those builders to `store.cached`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli import benchmarks, store
from tru_cli.backends import OfflineBackend
from tru_cli.config import conf_dir
from tru_cli.data.files import read_jsonl, write_jsonl
from tru_cli.errors import TruError
from tru_cli.metrics import judge as judge_metrics
from tru_cli.models import gguf, loading, tiny
from tru_cli.targets import generate as target_generation

FORMAT_VERSION = 3  # bump when a stage's output format changes, so old store entries are not reused
METRIC_NAMES_VERSION = 2  # bump when an evaluation's metric names change: evaluations rerun, trained models stay
# Generator settings that change how requests travel or when a run gives up, not what the targets
# are: left out of the key.
TRANSPORT_KEYS = ("base_url", "api_key_env", "timeout", "max_retries", "concurrency", "requests_per_minute",
                  "cache", "price_per_mtok", "allow_missing")
ROLES = ("full", "retain")
log = logging.getLogger("tru")


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def _bench_key(cfg: DictConfig, keep_splits: tuple[str, ...]) -> dict:
    bench = _plain(cfg.benchmark)
    for key in ("forget_split", "retain_split", "holdout_split", "unlearning_task"):
        if key not in keep_splits:
            bench.pop(key, None)
    return bench


def _model_key(cfg: DictConfig) -> dict:
    model = _plain(cfg.model)
    recipe = model.pop("recipe", {}) or {}
    model["finetune_recipe"] = {k: v for k, v in recipe.items() if k.startswith("finetune")}
    model.pop("tofu_checkpoints", None)
    return model


def _is_local(path) -> bool:
    return path is not None and Path(str(path)).exists()


# ---- finetuned models ----

def split_for(cfg: DictConfig, role: str) -> str:
    """The split a finetune of `role` learns: `full`, or the benchmark's retain split."""
    if role not in ROLES:
        raise TruError(f"finetune.split={role}; choose full or retain")
    return "full" if role == "full" else cfg.benchmark.retain_split


def tokenizer_corpus(cfg: DictConfig) -> list[str]:
    """The tiny tokenizer's training text: every string of the benchmark, and the refusal vocabulary
    of the offline targets, so targets tokenise as compactly as answers do."""
    bench = benchmarks.of(cfg.benchmark)
    texts = bench.all_text(cfg.benchmark)
    try:
        forget = bench.forget_rows(cfg.benchmark)
    except TruError:  # a MUSE/WMDP data_dir without the forget corpus: evaluation only
        forget = []
    for result in OfflineBackend().generate(target_generation.requests_for(cfg, forget)):
        texts += [result.reasoning, result.refusal]
    return texts


def base_model(cfg: DictConfig) -> str | None:
    """The published model a command starts from: `model.path`, or the safetensors copy of the
    `model.gguf` file (converted once into the store); None for a model built from `architecture`."""
    if cfg.model.path is not None:
        return str(cfg.model.path)
    spec = cfg.model.get("gguf")
    if spec is None:
        return None
    payload = {"v": FORMAT_VERSION, "gguf": _plain(spec), "source": gguf.identity(spec)}
    entry = store.cached(cfg.paths.store, "gguf", payload, lambda out: gguf.convert(spec, out / "model"))
    return str(entry / "model")


def initial_model(cfg: DictConfig):
    """The model before finetuning: the base model, or a fresh tiny model (tokenizer trained on the
    benchmark's text) when there is none."""
    base = base_model(cfg)
    if base is None:
        if cfg.model.architecture is None:
            raise TruError(f"model={cfg.model.name} has neither model.path nor an architecture to build")
        return tiny.build_tiny(cfg.model, tokenizer_corpus(cfg))
    return loading.load(base, cfg.device, cfg.model.get("tokenizer_path"))


def build_finetuned(cfg: DictConfig, role: str, out_dir: Path, on_log=None) -> dict:
    """Finetune the initial model on the split of `role` into `out_dir/model`; the training summary."""
    # deferred: the Trainer (and transformers' set_seed) pull in peft, datasets and bitsandbytes
    # (seconds); evaluation never needs them
    from transformers import set_seed

    from tru_cli.methods import finetune

    set_seed(int(cfg.seed))  # before the initial model: its random weights depend on it
    rows = benchmarks.of(cfg.benchmark).training_rows(cfg.benchmark, split_for(cfg, role))
    model, tok = initial_model(cfg)
    return finetune.train(cfg, role, rows, model, tok, Path(out_dir), on_log)


def finetuned(cfg: DictConfig, role: str) -> str:
    """Path or hub id of the model that learned the benchmark (`full`) or only its retain split."""
    published = benchmarks.of(cfg.benchmark).published_checkpoint(cfg, role)
    if published:
        return published
    payload = {"v": FORMAT_VERSION, "role": role, "model": _model_key(cfg), "seed": cfg.seed,
               "trainer": _plain(cfg.trainer.finetune), "optim": cfg.trainer.get("optim"),
               "precision": cfg.device.mixed_precision,
               "benchmark": _bench_key(cfg, ("retain_split",) if role == "retain" else ())}
    entry = store.cached(cfg.paths.store, f"finetune-{role}", payload,
                         lambda out: _write_metrics(out, build_finetuned(cfg, role, out)))
    return str(entry / "model")


def target_model(cfg: DictConfig) -> str:
    """The model a command works on: model.path when it is a local checkpoint; the base model as
    published when the benchmark's knowledge comes from pretraining (`TARGET_IS_BACKBONE`); else
    the finetuned target (a published TOFU checkpoint, or built once, e.g. for the embedded default)."""
    base = base_model(cfg)
    if base is None:
        return finetuned(cfg, "full")
    if _is_local(cfg.model.path) or getattr(benchmarks.of(cfg.benchmark), "TARGET_IS_BACKBONE", False):
        return base
    return finetuned(cfg, "full")


# ---- what a pretrained model knows ----

def build_probe(cfg: DictConfig, model_path: str, out: Path) -> dict:
    """probe.jsonl: the benchmark's probe of `model_path` (which questions it knows); the counts."""
    model, tok = loading.load(model_path, cfg.device)
    model.to(loading.device_of(cfg.device)).eval()
    rows, counts = benchmarks.of(cfg.benchmark).probe(model, tok, cfg)
    write_jsonl(Path(out) / "probe.jsonl", rows)
    return counts


def probed(cfg: DictConfig) -> str:
    """probe.jsonl of the target model on the benchmark, built once."""
    model_path = target_model(cfg)
    if _is_local(cfg.model.path):
        log.warning("probing model.path=%s; when it is an unlearned model, give benchmark.known=FILE (the "
                    "probe.jsonl of the model it came from) so the forget set is what that model knew",
                    cfg.model.path)
    bench = _bench_key(cfg, ())
    bench.pop("known", None)
    payload = {"v": FORMAT_VERSION, "model": model_path, "benchmark": bench,
               "prompt_format": _prompt_key(cfg)}
    entry = store.cached(cfg.paths.store, "probe", payload,
                         lambda out: _write_metrics(out, build_probe(cfg, model_path, out)))
    return str(entry / "probe.jsonl")


def named_model(cfg: DictConfig, name: str) -> str:
    """A model config's name (`smollm2-135m`, as in conf/model/) as the path of its weights (its
    GGUF converted once into the store); a local dir or hub id is returned as it is."""
    spec = conf_dir() / "model" / f"{name}.yaml"
    if Path(name).exists() or not spec.is_file():
        return name
    model = OmegaConf.load(spec)
    if model.get("path") is None and model.get("gguf") is None:
        raise TruError(f"model config {name} has no weights to load (no path, no gguf); name a model "
                       f"with weights, a local dir or a hub id")
    return str(base_model(OmegaConf.merge(cfg, {"model": model})))


def prepare(cfg: DictConfig) -> dict:
    """What a command needs before its stage runs, set into `cfg`: an hf generator or judge named by
    a model config gets that model's path; a benchmark that probes its model (`probe`) gets
    `benchmark.known` unless the user gave it. Returns the artifacts to record."""
    for section in ("generator", "judge"):
        node = cfg.get(section)
        if node is not None and node.get("backend") == "hf" and node.get("model"):
            node.model = named_model(cfg, str(node.model))
    if hasattr(benchmarks.of(cfg.benchmark), "probe") and not cfg.benchmark.get("known"):
        cfg.benchmark.known = probed(cfg)
        return {"probe": cfg.benchmark.known}
    return {}


# ---- targets ----

def build_targets(cfg: DictConfig, out_path: Path) -> dict:
    """targets.jsonl for the benchmark's forget rows; the generator's counts."""
    forget = benchmarks.of(cfg.benchmark).forget_rows(cfg.benchmark)
    return target_generation.generate(cfg, forget, Path(out_path), lambda: target_model(cfg))


def targets(cfg: DictConfig) -> str:
    generator = {k: v for k, v in _plain(cfg.generator).items() if k not in TRANSPORT_KEYS}
    if generator.get("backend") == "hf" and not generator.get("model"):
        generator["model"] = target_model(cfg)  # the run's own model writes them
    payload = {"v": FORMAT_VERSION, "generator": generator,
               "criteria": target_generation.with_criteria(cfg),
               "benchmark": _bench_key(cfg, ("forget_split", "unlearning_task"))}
    entry = store.cached(cfg.paths.store, "targets", payload,
                         lambda out: _write_metrics(out, build_targets(cfg, out / "targets.jsonl")))
    return str(entry / "targets.jsonl")


# ---- unlearned models ----

def build_unlearned(cfg: DictConfig, target: str, targets_path: str | None, out_dir: Path, on_log=None) -> dict:
    """Unlearn `target` into `out_dir/model` on the benchmark's forget rows (and retain rows, when
    the method has a retain term); the training summary."""
    from tru_cli.methods import unlearn  # deferred: see build_finetuned

    bench = benchmarks.of(cfg.benchmark)
    forget = bench.forget_rows(cfg.benchmark)
    retain = bench.retain_rows(cfg.benchmark) if "retain" in unlearn.parts_of(cfg.method) else []
    return unlearn.train(cfg, target, forget, retain, targets_path, Path(out_dir), on_log)


def _prompt_key(cfg: DictConfig):
    """What decides how a question becomes a prompt, for store keys: the format alone unless the model
    config sets a system prompt, a date or the literal template's answer prefix (older keys stay valid)."""
    extra = {k: cfg.model.get(k) for k in ("system_prompt", "date_string", "answer_prefix") if cfg.model.get(k) is not None}
    if not extra:
        return cfg.model.prompt_format
    return {"format": cfg.model.prompt_format, "template": cfg.model.get("literal_template"), **extra}


def unlearn_key(cfg: DictConfig, target: str, targets_path: str | None) -> dict:
    """What an unlearned model depends on. The benchmark's `wmdp` section (lm-eval batch, MMLU, shuffled
    option orders) only changes its evaluation: left out, so make option-shuffle's models serve the
    other tables."""
    bench = _bench_key(cfg, ("forget_split", "retain_split"))
    bench.pop("wmdp", None)
    return {"v": FORMAT_VERSION, "target": target, "targets": targets_path,
            "method": _plain(cfg.method), "trainer": _plain(cfg.trainer.unlearn), "seed": cfg.seed,
            "lora": _plain(cfg.trainer.get("lora")), "optim": cfg.trainer.get("optim"),
            "precision": cfg.device.mixed_precision, "max_length": cfg.model.max_length,
            "prompt_format": _prompt_key(cfg), "benchmark": bench,
            "encoding": 2}  # 2: prompts cut before targets, IDK answers redrawn per epoch, RMU per sequence


def unlearned(cfg: DictConfig, target: str, targets_path: str | None) -> tuple[str, dict]:
    payload = unlearn_key(cfg, target, targets_path)
    entry = store.cached(cfg.paths.store, "unlearn", payload,
                         lambda out: _write_metrics(out, build_unlearned(cfg, target, targets_path, out)))
    return str(entry / "model"), _read_metrics(entry)


# ---- evaluations ----

def evaluation(cfg: DictConfig, model: str, retain_logs: str | None, self_reference: bool = False) -> tuple[str, dict]:
    """Per-item logs dir and metrics of `model` on the benchmark's eval sets."""
    ev = _plain(cfg.eval)
    for key in ("from_logs", "retain_logs", "show_examples", "batch_size"):
        ev.pop(key, None)
    payload = {"v": FORMAT_VERSION, "names": METRIC_NAMES_VERSION, "model": model, "eval": ev, "retain_logs": retain_logs,
               "self_reference": self_reference, "prompt_format": _prompt_key(cfg),
               "benchmark": _bench_key(cfg, ("forget_split",))}
    entry = store.cached(cfg.paths.store, "eval", payload, lambda out: _write_metrics(
        out, benchmarks.evaluate(cfg, model, out, retain_logs, self_reference=self_reference)))
    return str(entry / "logs"), _read_metrics(entry)


def retain_logs(cfg: DictConfig) -> str:
    """Per-item logs of the retain model (the reference of forget quality), built once."""
    logs, _ = evaluation(cfg, finetuned(cfg, "retain"), None, self_reference=True)
    return logs


def reference_logs(cfg: DictConfig) -> str | None:
    """The logs of the benchmark's published reference model (MUSE's retrained model, when
    `benchmark.retrain_model` names one), evaluated once through the store; else None."""
    reference = getattr(benchmarks.of(cfg.benchmark), "reference_model", lambda bench: None)(cfg.benchmark)
    if not reference:
        return None
    logs, _ = evaluation(cfg, str(reference), None, self_reference=True)
    return logs


def default_retain_logs(cfg: DictConfig) -> str | None:
    """The retain model's logs where the benchmark's metrics need them: built once for the embedded
    default, the published reference model's (MUSE), else None (with a warning that forget quality
    will be missing)."""
    if not benchmarks.of(cfg.benchmark).USES_RETAIN_LOGS:
        return reference_logs(cfg)  # WMDP needs none; MUSE's PrivLeak may read its retrained model's
    if cfg.benchmark.source == "synthetic" and cfg.model.path is None:
        return retain_logs(cfg)
    log.warning("no eval.retain_logs given: forget_quality will be missing")
    return None


def build_judged_answers(cfg: DictConfig, model_path: str, queries: dict[str, list[dict]], out_dir: Path) -> dict:
    """The evaluated model's greedy answers to the judge's queries, at `judge.max_new_tokens` (apart
    from the metrics' shorter generations, which would cut a reasoning trace before its refusal):
    `<set>.jsonl` per set, and how many answers hit the cap."""
    from tru_cli.data.encoding import PromptFormatter  # deferred with the model code it needs
    from tru_cli.models import batching

    model, tok = loading.load(model_path, cfg.device)
    model.to(loading.device_of(cfg.device)).eval()
    fmt = PromptFormatter(tok, cfg.model)
    cap = int(cfg.judge.max_new_tokens)
    at_cap = total = 0
    for name, rows in queries.items():
        answers = batching.generate(model, tok, [fmt.prompt_ids(r["question"]) for r in rows], cap,
                                    int(cfg.eval.generate_batch_size), f"judge: {name} answers", do_sample=False)
        write_jsonl(Path(out_dir) / f"{name}.jsonl", [{**r, "generation": text, "tokens": n, "at_cap": n >= cap}
                                                      for r, (text, n) in zip(rows, answers, strict=True)])
        at_cap += sum(n >= cap for _, n in answers)
        total += len(answers)
    if at_cap:
        log.warning("judge: %d of %d answers reached judge.max_new_tokens=%d and were cut there", at_cap, total, cap)
    return {"judge/answers": total, "judge/answers_at_cap": at_cap}


def judged_answers(cfg: DictConfig, model_path: str) -> tuple[dict[str, list[dict]], dict]:
    """The model's answers to the benchmark's judge queries, built once through the store."""
    queries = benchmarks.of(cfg.benchmark).judge_queries(cfg.benchmark, cfg.judge.get("max_items"))
    payload = {"v": FORMAT_VERSION, "model": model_path, "queries": queries, "prompt_format": _prompt_key(cfg),
               "max_new_tokens": int(cfg.judge.max_new_tokens)}
    entry = store.cached(cfg.paths.store, "judge_answers", payload, lambda out: _write_metrics(
        out, build_judged_answers(cfg, model_path, queries, out)))
    answers = {name: read_jsonl(entry / f"{name}.jsonl") for name in queries if (entry / f"{name}.jsonl").is_file()}
    return answers, _read_metrics(entry)


def judge(cfg: DictConfig, log_dir: Path, model_path: str | None) -> dict:
    """The LLM judge's UQ/RQ: over the model's answers to the benchmark's judge queries, or, with no
    model (`eval.from_logs`), over the answers saved in `log_dir`. Verdicts go to `log_dir`."""
    if model_path is None:
        return judge_metrics.judge(cfg, benchmarks.of(cfg.benchmark).judge_sets(Path(log_dir)), Path(log_dir), None)
    answers, counts = judged_answers(cfg, model_path)
    for name, rows in answers.items():
        write_jsonl(Path(log_dir) / f"judge_answers_{name}.jsonl", rows)
    return {**counts, **judge_metrics.judge(cfg, answers, Path(log_dir), model_path)}


def producer_metrics(path: str) -> dict:
    """The training summary of the store entry a model came from (none for a hub id or user dir)."""
    entry = Path(path).parent
    return _read_metrics(entry) if (entry / "DONE").is_file() else {}


def _write_metrics(out: Path, metrics: dict) -> None:
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))


def _read_metrics(entry: Path) -> dict:
    path = Path(entry) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
