"""A deferred import started early on a thread, so that it runs while the model works.

rouge_score imports nltk, which takes about a second of pure Python that no training run needs,
so metrics import it only when they score. An evaluation generates its answers first, and greedy
decoding of a small model leaves a core partly idle: many small tensor operations, with the GIL
released inside each. An import started on a thread when generation begins fills those gaps.
Measured on 2 idle cores (128 prompts x 200 tokens, twice, on the 4-head Llama of
benchmarks/openunlearning.py, then `from rouge_score import rouge_scorer`; 5 runs each way,
medians): 5.43 s one after the other, and 4.42 s with the import on a thread during generation.

Python's per-module import locks make a later `import` of the same module in the main thread
wait for the thread's import to finish, so callers import as they always do; this only makes
that import cheap. A failed import on the thread is dropped: the caller's own import raises it
where it always did, with its message.
"""

from __future__ import annotations

import importlib
import threading

from tru_cli import collector


def in_background(module: str) -> threading.Thread:
    """Start importing `module` on a daemon thread, with the collector held off, and return the
    thread (joining it is never needed; a test may)."""
    def load() -> None:
        try:
            with collector.paused():
                importlib.import_module(module)
        except Exception:  # noqa: BLE001 (the caller's own import reports it)
            pass

    thread = threading.Thread(target=load, name=f"prefetch {module}", daemon=True)
    thread.start()
    return thread
