"""A paper target's table in the paper's layout: for each benchmark, one row per method (or alpha)
and one column per metric, each cell the reproduced value with the paper's published value beside it
where the paper gives one; written as markdown, CSV (one line per cell) and a PNG bar chart of the
first column. A CPU-scale table says so in its title."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.reproduce.run import Outcome


def value(outcome: Outcome, metric: str) -> float | None:
    """The job's value of `metric`: a pipeline run's unlearned model's, an eval or attack run's own."""
    try:
        metrics = json.loads((outcome.run_dir / "results.json").read_text()).get("metrics", {})
    except (OSError, ValueError):
        return None
    key = f"unlearned/{metric}" if outcome.job.command == "pipeline" else metric
    return metrics.get(key)


def cells(spec: DictConfig, outcomes: list[Outcome], published: dict, aliases: dict | None = None) -> list[dict]:
    """One cell per job and column. `aliases` ({benchmark: {column: metric}}, the scale's
    metric_aliases) read a column from the metric a stand-in benchmark reports under another name."""
    out = []
    for o in outcomes:
        paper = (published.get(o.job.benchmark) or {}).get(o.job.row) or {}
        renamed = (aliases or {}).get(o.job.benchmark) or {}
        for metric in spec.columns:
            out.append({"benchmark": o.job.benchmark, "row": o.job.row, "metric": str(metric),
                        "value": value(o, str(renamed.get(metric, metric))) if o.status != "failed" else None,
                        "paper": paper.get(metric), "status": o.status})
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}" if abs(x) < 0.01 and x else f"{x:.2f}"


def markdown(spec: DictConfig, scale: str, rows: list[dict], not_run: list[str] | None = None,
             aliases: dict | None = None) -> str:
    title = f"{spec.title}" + ("  (CPU scale: a small model on benchmark slices, not the paper's setting)"
                               if scale == "cpu" else "")
    parts = [f"## {title}", "", "Each cell: reproduced (paper's published value, where it gives one).", ""]
    if not_run:
        parts += [f"Not run this time: {', '.join(map(str, not_run))} (--benchmarks, or make {spec.name} "
                  f"BENCHMARKS=..., runs them).", ""]
    ran = {c["benchmark"] for c in rows}
    for bench, renamed in (aliases or {}).items():
        shown = {k: v for k, v in renamed.items() if k in map(str, spec.columns)}
        if bench in ran and shown:
            parts += [f"At this scale {bench}'s " + ", ".join(f"{k} is {v}" for k, v in shown.items()) +
                      " (the stand-in benchmark's name for it).", ""]
    for bench in (b for b in spec.benchmarks if any(c["benchmark"] == b for c in rows)):
        parts += [f"### {bench}", "", "| row | " + " | ".join(map(str, spec.columns)) + " |",
                  "|---|" + "---|" * len(spec.columns)]
        for row in spec.rows:
            got = {c["metric"]: c for c in rows if c["benchmark"] == bench and c["row"] == row}
            if not got:
                continue
            status = next(iter(got.values()))["status"]
            text = [_fmt(c["value"]) + (f" ({_fmt(c['paper'])})" if c["paper"] is not None else "")
                    for c in (got[str(m)] for m in spec.columns)]
            parts.append(f"| {row}{' (failed)' if status == 'failed' else ''} | " + " | ".join(text) + " |")
        parts.append("")
    return "\n".join(parts)


def write(spec: DictConfig, scale: str, rows: list[dict], out: Path, not_run: list[str] | None = None,
          aliases: dict | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = out / "table.md"
    md.write_text(markdown(spec, scale, rows, not_run, aliases) + "\n", encoding="utf-8")
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["benchmark", "row", "metric", "value", "paper", "status"])
        writer.writeheader()
        writer.writerows(rows)
    return [md, out / "table.csv", _bars(spec, scale, rows, out / f"{spec.name}.png")]


def _bars(spec: DictConfig, scale: str, rows: list[dict], path: Path) -> Path:
    """One panel per benchmark that ran. Bars: the first column per row, or with `figure: columns`
    (the robustness figure) every column side by side per row: before and after each attack."""
    import matplotlib  # deferred: slow to import, only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    benches = [str(b) for b in spec.benchmarks if any(c["benchmark"] == b for c in rows)] or [str(spec.benchmarks[0])]
    metrics = [str(m) for m in (spec.columns if spec.get("figure") == "columns" else spec.columns[:1])]
    names = [str(n) for n in spec.get("column_labels") or metrics]
    labels = list(spec.rows)
    fig, axes = plt.subplots(1, len(benches), figsize=(max(6, len(labels) * len(metrics) * 0.3) * len(benches), 4),
                             squeeze=False)
    width = 0.8 / len(metrics)
    for ax, bench in zip(axes[0], benches, strict=True):
        for k, metric in enumerate(metrics):
            got = {c["row"]: c["value"] for c in rows if c["benchmark"] == bench and c["metric"] == metric}
            ax.bar([i + k * width for i in range(len(labels))], [got.get(r) or 0.0 for r in labels], width,
                   label=names[k])
        ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(labels))], labels, rotation=45,
                      ha="right")
        ax.set_ylabel(str(spec.get("figure_ylabel") or metrics[0]))
        ax.set_title(f"{spec.name}, {bench}" + (" (CPU scale)" if scale == "cpu" else ""))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
