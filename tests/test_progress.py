"""Progress of long loops: rich bars on a terminal (transient, one shared display for nested
loops), periodic log lines otherwise, nothing from non-main processes or with TRU_PROGRESS=off."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from tru_cli import progress


def test_log_mode_writes_periodic_lines_and_a_final_one(monkeypatch, caplog):
    monkeypatch.setenv("TRU_PROGRESS", "log")
    monkeypatch.setenv("TRU_PROGRESS_EVERY", "0")
    with caplog.at_level(logging.INFO, logger="tru"), progress.track("eval forget", 3, "items") as bar:
        for _ in range(3):
            bar.advance(1, loss=1.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("eval forget: 1/3 items (33%)") and "ETA" in lines[0] and "loss 1.5" in lines[0]
    assert lines[-1].startswith("eval forget: 3/3 items in ") and len(lines) == 3


def test_log_mode_is_quiet_between_periods(monkeypatch, caplog):
    monkeypatch.setenv("TRU_PROGRESS", "log")
    monkeypatch.setenv("TRU_PROGRESS_EVERY", "3600")
    with caplog.at_level(logging.INFO, logger="tru"), progress.track("answers", 50) as bar:
        for _ in range(50):
            bar.advance()
    assert caplog.records == []  # a loop shorter than the period leaves no line


def test_terminal_bars_nest_in_one_transient_display():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress.track("unlearn", 2, "steps", console=console) as outer:
        with progress.track("eval forget: answers", 4, console=console) as inner:
            inner.advance(4)
            assert progress._live["users"] == 2  # the inner loop joined the outer loop's display
        outer.advance(2, loss=0.25)
    assert progress._live["progress"] is None and progress._live["users"] == 0
    assert "unlearn" in buffer.getvalue() and "eval forget: answers" in buffer.getvalue()


def test_off_and_non_main_processes_report_nothing(monkeypatch, caplog):
    monkeypatch.setenv("TRU_PROGRESS_EVERY", "0")
    monkeypatch.setenv("TRU_PROGRESS", "off")
    with caplog.at_level(logging.INFO, logger="tru"), progress.track("x", 2) as bar:
        bar.advance(2)
    monkeypatch.setenv("TRU_PROGRESS", "log")
    monkeypatch.setattr(progress.distributed, "is_main", lambda: False)
    with caplog.at_level(logging.INFO, logger="tru"), progress.track("y", 2) as bar:
        bar.advance(2)
    assert caplog.records == []
