"""A content-addressed store of stage outputs (finetuned models, targets, evaluations).

A stage's output lives in `<paths.store>/<stage>/<key>/`, where the key hashes the configuration
that determines it. A finished entry is reused by any later run or sweep job with the same
configuration; an entry is built in a temporary folder and renamed only when complete, so a
killed run never leaves a half-written result, and a file lock makes concurrent jobs wait for
each other instead of computing the same thing twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("tru")


def key_of(payload) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(store_root: str | Path, stage: str, payload, build: Callable[[Path], None]) -> Path:
    """The finished entry for (stage, payload), building it with `build(tmp_dir)` if absent."""
    root = Path(store_root) / stage
    root.mkdir(parents=True, exist_ok=True)
    key = key_of(payload)
    final = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "DONE").is_file():
            log.info("reusing %s %s", stage, final)
            return final
        tmp = root / f"{key}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        (tmp / "key.json").write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
        build(tmp)
        (tmp / "DONE").write_text("")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final
