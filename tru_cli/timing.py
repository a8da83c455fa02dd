"""Where a command's fixed cost goes: wall-clock marks (first training step, last training step, ...)
as seconds since the process started, written into results.json under `timing` and read by
`make bench` (seconds_to_first_step). Marks are first-wins, so a second trainer in one command does
not move them."""

from __future__ import annotations

import os
import time

_IMPORTED_AT = time.time()  # fallback start where /proc is absent (macOS): when tru was first imported
_marks: dict[str, float] = {}


def process_started() -> float:
    """The Unix time this process started (interpreter start-up and imports included), from /proc."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks after boot
        since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since_start
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED_AT


def mark(name: str) -> None:
    _marks.setdefault(name, time.time())


def marks() -> dict[str, float]:
    """{name: Unix time} of every mark so far, plus `process_started`."""
    return {"process_started": process_started(), **_marks}
