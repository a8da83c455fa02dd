"""Progress of long loops (training steps, evaluation, generation, judge and attack items).

On a terminal: rich bars with the rate and ETA, transient (they vanish when their loop ends, so the
results stay readable). When stderr is not a terminal (CI, SLURM, a log file): one log line per
`TRU_PROGRESS_EVERY` seconds (default 30) and one when the loop ends, instead of carriage returns.
`TRU_PROGRESS=off` silences both. Only the main process of a multi-process run reports."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tru_cli import distributed

log = logging.getLogger("tru")
_live: dict = {"progress": None, "users": 0}  # one live display at a time: nested loops share it


def mode() -> str:
    """`bar`, `log` or `off`: TRU_PROGRESS if set, else bar on a terminal and log otherwise."""
    chosen = os.environ.get("TRU_PROGRESS", "").strip().lower()
    if chosen in ("bar", "log", "off"):
        return chosen
    # the process's own stderr: wandb wraps sys.stderr in a console recorder that can claim to be a terminal
    stream = sys.__stderr__ or sys.stderr
    return "bar" if stream is not None and stream.isatty() else "log"


def _every() -> float:
    try:
        return float(os.environ.get("TRU_PROGRESS_EVERY", "30"))
    except ValueError:
        return 30.0


class Tracker:
    """Counts one loop's work; `advance(n, **fields)` after each unit (fields: loss, tokens/s...)."""

    def __init__(self, description: str, total: int, unit: str, how: str, progress: Progress | None = None):
        self.description, self.total, self.unit, self.how = description, int(total), unit, how
        self.done, self.fields = 0, {}
        self.start = self.last_line = time.perf_counter()
        self.progress = progress
        self.task = progress.add_task(description, total=self.total, fields="") if progress else None

    def _fields_text(self) -> str:
        return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items())

    def advance(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update({k: v for k, v in fields.items() if v is not None})
        if self.how == "bar" and self.progress is not None:
            self.progress.update(self.task, advance=n, fields=self._fields_text())
        elif self.how == "log" and time.perf_counter() - self.last_line >= _every() and self.done < self.total:
            self.last_line = time.perf_counter()
            log.info("%s", self.line())

    def line(self) -> str:
        seconds = time.perf_counter() - self.start
        rate = self.done / seconds if seconds > 0 else 0.0
        text = f"{self.description}: {self.done}/{self.total} {self.unit}"
        if self.done < self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            text += f" ({100 * self.done / max(self.total, 1):.0f}%), {rate:.3g} {self.unit}/s, ETA {eta:.0f} s"
        else:
            text += f" in {seconds:.1f} s ({rate:.3g} {self.unit}/s)"
        extra = self._fields_text()
        return f"{text}  {extra}" if extra else text

    def close(self) -> None:
        if self.how == "bar" and self.progress is not None:
            self.progress.remove_task(self.task)
        elif self.how == "log" and self.done and time.perf_counter() - self.start >= min(_every(), 5.0):
            log.info("%s", self.line())  # a loop too short to matter leaves no line


def _open_display(console: Console | None) -> Progress:
    if _live["progress"] is None:
        _live["progress"] = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[fields]}"),
            console=console or Console(stderr=True), transient=True)
        _live["progress"].start()
    _live["users"] += 1
    return _live["progress"]


def _close_display() -> None:
    _live["users"] -= 1
    if _live["users"] == 0 and _live["progress"] is not None:
        _live["progress"].stop()
        _live["progress"] = None


@contextmanager
def track(description: str, total: int, unit: str = "items", console: Console | None = None) -> Iterator[Tracker]:
    """A Tracker for a loop of `total` units, shown as this process's mode says."""
    how = mode() if distributed.is_main() and total > 0 else "off"
    if console is not None and how != "off":
        how = "bar"
    progress = _open_display(console) if how == "bar" else None
    tracker = Tracker(description, total, unit, how, progress)
    try:
        yield tracker
    finally:
        tracker.close()
        if progress is not None:
            _close_display()
