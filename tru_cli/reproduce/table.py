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


def cells(spec: DictConfig, outcomes: list[Outcome], published: dict) -> list[dict]:
    out = []
    for o in outcomes:
        paper = (published.get(o.job.benchmark) or {}).get(o.job.row) or {}
        for metric in spec.columns:
            out.append({"benchmark": o.job.benchmark, "row": o.job.row, "metric": str(metric),
                        "value": value(o, metric) if o.status != "failed" else None,
                        "paper": paper.get(metric), "status": o.status})
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}" if abs(x) < 0.01 and x else f"{x:.2f}"


def markdown(spec: DictConfig, scale: str, rows: list[dict]) -> str:
    title = f"{spec.title}" + ("  (CPU scale: a small model on benchmark slices, not the paper's setting)"
                               if scale == "cpu" else "")
    parts = [f"## {title}", "", "Each cell: reproduced (paper's published value, where it gives one).", ""]
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


def write(spec: DictConfig, scale: str, rows: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = out / "table.md"
    md.write_text(markdown(spec, scale, rows) + "\n", encoding="utf-8")
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["benchmark", "row", "metric", "value", "paper", "status"])
        writer.writeheader()
        writer.writerows(rows)
    return [md, out / "table.csv", _bars(spec, scale, rows, out / f"{spec.name}.png")]


def _bars(spec: DictConfig, scale: str, rows: list[dict], path: Path) -> Path:
    import matplotlib  # deferred: slow to import, only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    metric = str(spec.columns[0])
    labels = list(spec.rows)
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * len(spec.benchmarks) * 0.35), 4))
    width = 0.8 / max(len(spec.benchmarks), 1)
    for k, bench in enumerate(spec.benchmarks):
        got = {c["row"]: c["value"] for c in rows if c["benchmark"] == bench and c["metric"] == metric}
        ax.bar([i + k * width for i in range(len(labels))], [got.get(r) or 0.0 for r in labels], width, label=str(bench))
    ax.set_xticks([i + width * (len(spec.benchmarks) - 1) / 2 for i in range(len(labels))], labels, rotation=45,
                  ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{spec.name}: {metric}" + (" (CPU scale)" if scale == "cpu" else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
