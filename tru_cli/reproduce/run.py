"""Running a paper target: each job is one `tru` command in its own run folder
(`runs/paper/<target>/<scale>/<benchmark>/<row>/`), one after the other (two torch jobs on a small
machine thrash), all sharing the store. A job whose results.json says `completed` is not run again,
so a killed target resumes with the same command; a job killed midway starts again, and what it had
bought (targets, judge verdicts: the request caches in the store) is replayed, never asked again.
A failed job is recorded and the others go on; the table marks its cells missing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tru_cli.reproduce.spec import Job

log = logging.getLogger("tru")


@dataclass
class Outcome:
    job: Job
    run_dir: Path
    status: str  # completed | reused | failed
    error: str | None = None


def status_of(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run_job(job: Job, run_dir: Path, extra: list[str]) -> Outcome:
    if status_of(run_dir) == "completed":
        log.info("%s: completed earlier, reused (%s)", job.name, run_dir)
        return Outcome(job, run_dir, "reused")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tru_cli", job.command, *job.overrides, *extra, f"hydra.run.dir={run_dir}"]
    log.info("%s: tru %s", job.name, " ".join(command[3:]))
    with open(run_dir.parent / f"{run_dir.name}.log", "w", encoding="utf-8") as out:
        proc = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        error = next((x for x in reversed(lines) if x.startswith("error:")), lines[-1] if lines else f"exit {proc.returncode}")
        log.warning("%s failed: %s", job.name, error)
        return Outcome(job, run_dir, "failed", error)
    return Outcome(job, run_dir, "completed")
