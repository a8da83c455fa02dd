"""A resumable on-disk cache of chat requests: one JSON line per answered request, keyed by a hash of
the request body (model, messages, sampling settings) and the attempt number.

Every answer is appended and fsync'ed the moment it arrives, so a run that crashes or is killed
keeps all it paid for: the rerun reads the file back and asks only for what is missing. A torn last
line (the process died mid-write) is skipped. The body never holds the API key (it travels in a
header), so nothing secret is written here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("tru")


def request_key(body: dict, attempt: int) -> str:
    text = json.dumps({"body": body, "attempt": attempt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path and self.path.is_file():
            self._load()

    def _load(self) -> None:
        torn = 0
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    torn += 1
        if torn:
            log.warning("request cache %s: skipped %d unreadable line(s) (a run was killed mid-write)",
                        self.path, torn)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, reply: dict) -> None:
        self.entries[key] = reply
        if self.path is None:
            return
        line = json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # sweep jobs may share one cache file
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
