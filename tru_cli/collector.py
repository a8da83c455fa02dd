"""Python's cyclic garbage collector, held off while a `tru` process starts up and kept off its imports.

Importing torch, transformers and its Trainer allocates about 730,000 objects that live as long as
the process. With the collector on, every allocation burst triggers a collection that walks them
again, and at exit the interpreter's last collection walks them once more. Measured on 2 idle cores,
median of 3 (`import transformers.trainer, transformers.modeling_utils` in a fresh process):
- the imports took 3.92 s with the collector on and 3.12 s with it off;
- the process exited 0.9-1.0 s after its last line with the collector on, and 0.15 s after
  `gc.freeze()`.

So the command's own process (`tru ...`, its distributed ranks) pauses the collector until its
inputs are ready, then freezes what start-up allocated, the imported modules above all, so that
later collections skip it, and resumes. At exit it freezes again. The start-up garbage that is
never collected this way is small: a collection at that point found 11,934 unreachable objects and
took 0.33 s, more than it would free is worth. An in-process caller (a test's CliRunner, a notebook)
never pauses, so `resume_after_startup` leaves its collector as it is.

A heavy library that a run imports later, once its work has begun (rouge_score with nltk, wandb),
imports under `paused()`: nltk's import under rouge_score took 1.42-1.60 s with the collector on and
0.88-1.05 s with it off (after torch, 2 idle cores, 2 runs each).
"""

from __future__ import annotations

import contextlib
import gc

_paused = False


def pause_for_startup() -> None:
    """Hold the collector off until `resume_after_startup`; for the command's own process only."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_after_startup() -> None:
    """Freeze what start-up allocated and let the collector run again, if `pause_for_startup` held it
    off; the work that follows (training, generation) makes its garbage with the collector on."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


def freeze_before_exit() -> None:
    """Move every object to the permanent generation, so the interpreter's last collection at exit
    has nothing to walk; files, wandb and atexit handlers finish as they would."""
    gc.freeze()


@contextlib.contextmanager
def paused():
    """The collector held off for a block (a deferred import of a large library), then on again if
    it was on; another thread's block inside this one's only finds it off already."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
