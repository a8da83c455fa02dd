"""tru report: one table (markdown and CSV) and two plots over many run or sweep dirs.

Each run contributes a row: its dir, status, method, the overrides it was launched with (from
Hydra's `.hydra/overrides.yaml`) and the chosen metrics. Pipeline runs report their `unlearned/`
metrics by default (`--role`); plain eval runs report theirs unprefixed.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from tru_cli.checks import writable
from tru_cli.errors import TruError
from tru_cli.tracking import resolve_wandb_mode

DEFAULT_METRICS = ["tofu/forget_rougeL_recall", "tofu/retain_rougeL_recall", "tofu/forget_truth_ratio",
                   "tofu/forget_quality", "tofu/model_utility"]
OPTIONAL_METRICS = ["judge/uq", "judge/rq"]  # default columns too, when some run has them (judge=...)
# Direction of each metric, shown in the table header (↑ higher is better, ↓ lower is better after
# unlearning, ≈ closest to the retain model is best).
DIRECTION = {"forget_rougeL_recall": "↓", "forget_rouge1_recall": "↓", "forget_prob": "↓",
             "forget_truth_ratio": "≈retain", "forget_quality": "↑ vs retain", "model_utility": "↑",
             "retain_rougeL_recall": "↑", "retain_prob": "↑", "retain_truth_ratio": "↑", "recovery": "↓",
             "ra_rougeL_recall": "↑", "wf_rougeL_recall": "↑", "ra_prob": "↑", "wf_prob": "↑",
             "extraction_strength": "↓", "privleak": "≈0 vs retain", "verbmem_forget": "↓", "knowmem_forget": "↓",
             "knowmem_retain": "↑", "bio_acc": "↓", "cyber_acc": "↓", "acc": "↑",
             **{f"{rubric}{dim}": "↑" for rubric, dims in (("uq", ("", "_relevance", "_rejection", "_helpfulness")),
                                                          ("rq", ("", "_readability", "_specificity", "_logic")))
                for dim in dims}}


def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise TruError(f"{path} does not exist; give run or sweep directories")
        found = [path] if (path / "results.json").is_file() else sorted(
            p.parent for p in path.rglob("results.json") if ".tru_store" not in p.parts)
        runs.extend(found)
    if not runs:
        raise TruError(f"no results.json under {', '.join(paths)}")
    return runs


def _overrides(run: Path) -> list[str]:
    file = run / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    return [str(o) for o in OmegaConf.load(file) if not str(o).startswith("hydra.")]


def _method(run: Path) -> str:
    file = run / "config.yaml"
    if not file.is_file():
        return "?"
    return str(OmegaConf.select(OmegaConf.load(file), "method.name", default="?"))


ATTACK_METRICS = ["unlearned_forget_rougeL_recall", "forget_rougeL_recall", "original_forget_rougeL_recall",
                  "recovery"]


def attack_rows(run: Path, res: dict) -> list[dict]:
    """One row per attack of a `tru attack` run (a suite gives seven)."""
    values = res.get("metrics", {})
    names = sorted({k.split("/")[1] for k in values if k.startswith("attack/") and k.count("/") == 2
                    and k.endswith("/recovery")})
    rows = []
    for name in names:
        # the columns hold the attack's main metric: ROUGE-L recall of QA answers, else the one it reports
        # (rougeL_f1 of MUSE VerbMem continuations, acc of WMDP questions), named beside the attack
        main = next((m for m in ("rougeL_recall", "rougeL_f1", "acc") if f"attack/{name}/forget_{m}" in values),
                    "rougeL_recall")
        label = name if main == "rougeL_recall" else f"{name} ({main})"
        rows.append({"run": str(run), "status": res.get("status"), "method": f"{_method(run)} / {label}",
                     "overrides": " ".join(_overrides(run)),
                     **{m: values.get(f"attack/{name}/{m.replace('rougeL_recall', main)}") for m in ATTACK_METRICS}})
    return rows


def read_results(path: Path) -> dict:
    """A run's results.json, or a TruError naming the file when it is not one tru wrote."""
    fix = "remove it, or give the run folders without it"
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruError(f"{path} is not JSON ({str(exc).splitlines()[0][:60]}); {fix}") from None
    if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict) or "command" not in res:
        raise TruError(f"{path} is not a tru results file (an object with 'command', 'status' and "
                       f"'metrics' is expected); {fix}")
    bad = [k for k, v in res["metrics"].items() if v is not None and (isinstance(v, bool) or not isinstance(v, int | float))]
    if bad:
        raise TruError(f"{path}: metric {bad[0]}={res['metrics'][bad[0]]!r} is not a number; {fix}")
    return res


def collect(paths: list[str], metrics: list[str], role: str) -> list[dict]:
    """Rows of the table; attack runs give one row per attack with the ATTACK_METRICS columns.
    `role` may name several models of a pipeline run (`target,unlearned`): a row each, the method
    column saying which; a model shared by the runs of a sweep (their target) gives one row."""
    rows, seen = [], set()
    roles = [r.strip() for r in str(role or "").split(",") if r.strip()] or [""]
    for run in find_runs(paths):
        res = read_results(run / "results.json")
        if res.get("command") == "attack":
            rows.extend(attack_rows(run, res))
            continue
        values = res.get("metrics", {})
        for one in roles if res.get("command") == "pipeline" else [""]:
            model = (res.get("artifacts") or {}).get(f"{one}_model")
            if model and one != "unlearned":
                key = (one, str((run / model).resolve()))
                if key in seen:
                    continue
                seen.add(key)
            prefix = f"{one}/" if one else ""
            method = _method(run) if len(roles) == 1 or one == "unlearned" else one
            row = {"run": str(run), "status": res.get("status"), "method": method,
                   "overrides": " ".join(_overrides(run)), "role": one}
            for name in metrics:
                row[name] = values.get(prefix + name)
            rows.append(row)
    return rows


def examples(rows: list[dict], count: int) -> str:
    """The first `count` answers of each eval set in the logs of every row's model (its pipeline
    role's logs, or an eval run's), as text to print: what the numbers mean in words."""
    out = []
    for row in rows:
        logs = Path(row["run"]) / "logs" / row["role"] if row.get("role") else Path(row["run"]) / "logs"
        for path in sorted(logs.glob("tofu_*.jsonl")) if logs.is_dir() else []:
            items = [it for it in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                                   if line.strip()) if "generation" in it][:count]
            if items:
                out.append(f"\n{row['method']}: {path.stem.removeprefix('tofu_')} answers")
                out += [f"  Q: {it['question']}\n  A: {' '.join(str(it['generation']).split())[:300]}" for it in items]
    return "\n".join(out)


# benchmark=real_knowledge: its forget truth ratio is max(0, 1 - 1/R), lower once forgotten; the rest
# of its keep-set statistics are higher when kept
DIRECTION_OF = {"real/forget_truth_ratio": "↓", **{f"real/{s}_{m}": "↑" for s in ("authors", "facts")
                                                   for m in ("rougeL_recall", "prob", "truth_ratio")}}


def header(name: str) -> str:
    short = name.split("/")[-1]
    arrow = DIRECTION_OF.get(name) or DIRECTION.get(short)
    return f"{name} {arrow}" if arrow else name


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def write_tables(rows: list[dict], metrics: list[str], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    cols = ["run", "status", "method", "overrides", *metrics]
    with open(out / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(["method", "overrides", "status", *map(header, metrics)]) + " |",
             "|" + "---|" * (3 + len(metrics))]
    for row in rows:
        cells = [row["method"], row["overrides"] or "-", row["status"], *(_fmt(row[m]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md", out / "report.csv"


def _scatter(rows, x, y, path: Path, logx=False) -> Path | None:
    import matplotlib  # deferred: matplotlib is slow to import and only plots need it

    matplotlib.use("Agg")  # no display: render to files
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    points = [(r[x], r[y], r["method"]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for px, py, label in points:
        ax.scatter(px, py)
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(header(x))
    ax.set_ylabel(header(y))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plots(rows: list[dict], out: Path) -> list[Path]:
    made = [_scatter(rows, "tofu/forget_quality", "tofu/model_utility", out / "fq_vs_mu.png", logx=True),
            _scatter(rows, "tofu/forget_rougeL_recall", "tofu/retain_rougeL_recall", out / "forget_vs_retain_rouge.png")]
    return [p for p in made if p]


def log_to_wandb(rows: list[dict], metrics: list[str], images: list[Path]) -> bool:
    """Log the table and plots into the active wandb run, if there is one."""
    try:
        import wandb  # deferred: wandb is slow to import and only --wandb needs it
    except ImportError:
        return False
    if wandb.run is None:
        return False
    cols = ["run", "status", "method", "overrides", *metrics]
    wandb.log({"report/table": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in rows]),
               **{f"report/{p.stem}": wandb.Image(str(p)) for p in images}})
    return True


@dataclass
class Report:
    """What `tru report` made: the markdown table and the files written (table, CSV, plots)."""

    table: str
    files: list[Path]
    rows: list[dict]
    metrics: list[str]
    images: list[Path]
    folder: Path


def report(paths: list[str], metrics: list[str] | None, role: str, out: str | None) -> Report:
    """`tru report`: one table over the runs. `metrics` None = the TOFU five, plus the judge's
    columns when some run was judged; only attack runs = the attack columns."""
    names = metrics or DEFAULT_METRICS + OPTIONAL_METRICS
    rows = collect(paths, names, role)
    if not metrics:
        names = [n for n in names if n in DEFAULT_METRICS or any(r.get(n) is not None for r in rows)]
    if rows and all(r["method"].count(" / ") for r in rows):  # only attack runs: their own columns
        names = ATTACK_METRICS
    folder = Path(out) if out else Path(paths[0]) / "report"
    if not writable(folder):
        raise TruError(f"the report folder {folder} cannot be written; choose another with --out DIR")
    md, csv_path = write_tables(rows, names, folder)
    images = plots(rows, folder)
    return Report(md.read_text(), [md, csv_path, *images], rows, names, images, folder)


def publish(rep: Report) -> None:
    """The table and plots into a new wandb run (`tru report --wandb`)."""
    import wandb  # deferred: wandb is slow to import and only --wandb needs it

    run = wandb.init(project="tru", job_type="report", dir=str(rep.folder),
                     mode=resolve_wandb_mode(os.environ.get("WANDB_MODE", "auto")))
    log_to_wandb(rep.rows, rep.metrics, rep.images)
    run.finish()
