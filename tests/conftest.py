"""Shared helpers: the real CLI in a subprocess, offline, with its own working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
TRU = [sys.executable, "-m", "tru_cli"]
# A pipeline small enough for tests (experiments/smoke.yaml): 5 authors, 1 forgotten, few epochs.
SMALL = ["experiments=smoke"]


def tru_env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HOME": str(tmp_path / "hf_home"), "WANDB_MODE": "disabled",
                "WANDB_DIR": str(tmp_path)})
    env.update(extra)
    return env


def run_tru(args: list[str], cwd: Path, env: dict | None = None, check: bool = True,
            timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TRU, *args], cwd=cwd, env=env or tru_env(cwd), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tru {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


def only_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in Path(root).rglob("results.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason=f"{SHARED_DATA} is absent (the shared benchmark slices)")
