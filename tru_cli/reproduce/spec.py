"""A paper target as jobs: `experiments/paper/<target>.yaml` names the benchmarks, the rows (methods,
alpha values, ...) and the columns of one table or figure; `experiments/paper/scale/<scale>.yaml`
says how each benchmark runs at that scale (backbone, data, generator, judge, device). A job is one
`tru` command for one (benchmark, row) pair; the `original` row evaluates the target as published."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli.config import experiments_root
from tru_cli.errors import TruError

ORIGINAL = "original"  # the row of the model before unlearning


@dataclass(frozen=True)
class Job:
    target: str
    benchmark: str  # a key of the scale's `benchmarks`
    row: str  # a key of the target's `rows`
    command: str  # pipeline | eval | attack
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.benchmark}/{self.row.replace('=', '_')}"


def paper_dir() -> Path:
    return experiments_root() / "experiments" / "paper"


def targets() -> list[str]:
    return sorted(p.stem for p in paper_dir().glob("*.yaml") if p.stem != "published")


def scales() -> list[str]:
    return sorted(p.stem for p in (paper_dir() / "scale").glob("*.yaml"))


def load(target: str, scale: str, data: str | None = None) -> tuple[DictConfig, DictConfig]:
    """The target's spec and the scale's settings (`data`: the slices' folder, for the CPU scale)."""
    if target not in targets():
        raise TruError(f"no paper target '{target}'; choose {', '.join(targets())}")
    if scale not in scales():
        raise TruError(f"SCALE={scale}; choose {' or '.join(scales())}")
    spec = OmegaConf.load(paper_dir() / f"{target}.yaml")
    settings = OmegaConf.load(paper_dir() / "scale" / f"{scale}.yaml")
    if data:
        settings.data = data
    missing = [b for b in spec.benchmarks if b not in settings.benchmarks]
    if missing:
        raise TruError(f"experiments/paper/scale/{scale}.yaml has no benchmark {', '.join(missing)} "
                       f"that {target} needs")
    return spec, settings


def jobs(spec: DictConfig, settings: DictConfig, extra: list[str] | None = None) -> list[Job]:
    """One job per (benchmark, row), benchmarks outermost, in the spec's order: the scale's common
    overrides, the target's, the scale's for this target, the benchmark's, the row's; `extra`
    overrides (the command line's) come last in every job."""
    out = []
    per_target = (settings.get("target_overrides") or {}).get(spec.name) or []
    common = [str(o) for o in settings.common] + [str(o) for o in spec.overrides or []] + [str(o) for o in per_target]
    if not spec.judged:  # the scale's judge is for the targets whose columns are the judge's
        common = [o for o in common if not o.startswith("judge")] + ["judge=none"]
    for bench in spec.benchmarks:
        base = [str(o) for o in OmegaConf.to_container(settings.benchmarks[bench], resolve=True)]
        for row, overrides in spec.rows.items():
            if overrides is None:  # the original model: evaluated (or attacked) as the target it is
                command = "eval" if spec.command == "pipeline" else spec.command
                out.append(Job(spec.name, bench, row, command, [*common, *base, *(extra or [])]))
            else:
                out.append(Job(spec.name, bench, row, str(spec.command), [*common, *base, *map(str, overrides),
                                                                          *(extra or [])]))
    return out


def select(jobs: list[Job], rows: str | None, benchmarks: str | None) -> list[Job]:
    """The jobs of the comma-separated `rows` and `benchmarks` (all when None); an unknown name is one line."""
    for names, have, what in ((rows, {j.row for j in jobs}, "rows"), (benchmarks, {j.benchmark for j in jobs}, "benchmarks")):
        unknown = [n for n in (names.split(",") if names else []) if n not in have]
        if unknown:
            raise TruError(f"--{what} has {', '.join(unknown)}; this target has {', '.join(sorted(have))}")
    keep_rows = set(rows.split(",")) if rows else None
    keep_benchmarks = set(benchmarks.split(",")) if benchmarks else None
    return [j for j in jobs if (keep_rows is None or j.row in keep_rows)
            and (keep_benchmarks is None or j.benchmark in keep_benchmarks)]


def run_benchmarks(settings: DictConfig, target: str) -> str | None:
    """The benchmarks a target runs at this scale when --benchmarks names none (None: all of them):
    the CPU scale runs the ones that fit its 15 minutes."""
    chosen = (settings.get("run_benchmarks") or {}).get(target)
    return ",".join(map(str, chosen)) if chosen else None


def metric_aliases(settings: DictConfig) -> dict:
    """{benchmark: {column: metric}}: where a scale's stand-in benchmark reports a column under its own name."""
    return OmegaConf.to_container(settings.get("metric_aliases") or OmegaConf.create({}))


def published(target: str) -> dict:
    """The paper's values for `target`: {benchmark: {row: {metric: value}}} (empty where unpublished)."""
    values = OmegaConf.load(paper_dir() / "published.yaml")
    return OmegaConf.to_container(values.get(target) or OmegaConf.create({}))
