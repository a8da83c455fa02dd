"""One interface over the benchmarks: each of `tofu` (TOFU and the embedded fictitious-author
benchmark), `muse` and `wmdp` is a module here, looked up by the config's `benchmark.format`.

Every module provides:
- `training_rows(bench, split)`: what a finetune learns (`full`, or the retain split);
- `forget_rows(bench)` and `retain_rows(bench)`: what unlearning forgets and keeps;
- `all_text(bench)`: every string, for training the tiny model's tokenizer;
- `evaluate(model, tok, cfg, log_dir, retain_logs, self_reference)`: the metrics, with per-item logs
  written to `log_dir`, and a few (question, answer) examples to print;
- `judge_queries(bench, max_items)`: the free-text questions the LLM judge's answers come from
  ({"forget": [...] for UQ, "retain": [...] for RQ}, each row an id and a question);
- `judge_sets(log_dir)`: saved free-text answers, for judging `eval.from_logs` without a model, or None;
- `attack_sets(bench, max_items, which)`: the rows `tru attack` re-asks (forget, retain), each of a
  `kind` (qa, continuation, choice: attacks/probes.py); `which` = `attack.forget_items`, null for the default;
- `from_logs(log_dirs, retain_logs, out_dir)`: metrics re-aggregated from saved logs;
- `published_checkpoint(cfg, role)`: a published model standing for the finetuned one, or None;
- `USES_RETAIN_LOGS`: whether a metric needs the retain model's logs (forget quality);
- `HEADLINE`: the metrics of the pipeline's summary table.
A module may also set `TARGET_IS_BACKBONE = True` (the knowledge comes from pretraining: a
published model is unlearned as it is, never finetuned first) and provide `probe(model, tok, cfg)`
(rows of probe.jsonl and counts: which items the model knows; artifacts.prepare runs it).

Adding a benchmark means adding one module here and one config in conf/benchmark/.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from tru_cli.errors import TruError
from tru_cli.models import loading


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def of(bench: DictConfig) -> ModuleType:
    """The module of `benchmark.format`."""
    name = str(bench.format)
    if name not in names():
        raise TruError(f"benchmark.format={name} has no module in tru_cli/benchmarks; choose {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def evaluate(cfg: DictConfig, model_path: str, out_dir: Path, retain_logs: str | None,
             self_reference: bool = False) -> dict:
    """Evaluate `model_path` on the benchmark, write per-item logs to `out_dir/logs`, return the metrics."""
    start = time.perf_counter()
    model, tok = loading.load(model_path, cfg.device)
    model.to(loading.device_of(cfg.device)).eval()
    metrics, examples = of(cfg.benchmark).evaluate(model, tok, cfg, Path(out_dir) / "logs", retain_logs,
                                                   self_reference)
    seconds = time.perf_counter() - start
    items = metrics.pop("eval/items", None)
    metrics["eval/seconds"] = seconds
    if items is not None:
        metrics.update({"eval/items": items, "eval/items_per_second": items / seconds})
    show(metrics, examples[:int(cfg.eval.show_examples)])
    return metrics


def show(metrics: dict, examples: list[tuple[str, str]] = ()) -> None:
    """A rich table of the metrics (and a few forget-set generations)."""
    table = Table(title="evaluation", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, "missing" if value is None else f"{value:.4g}")
    console = Console()
    console.print(table)
    for question, answer in examples:
        console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] {answer}\n")
