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


@pytest.fixture(scope="session")
def config():
    """A command's config as tru composes it (conf/ and experiments/, no run dir, nothing loaded):
    `config("unlearn", "method=npo", "experiments=smoke")`."""
    from tru_cli.config import compose

    return lambda command, *overrides: compose(command, list(overrides))


@pytest.fixture(scope="session")
def tiny_model():
    """A factory of small random Llamas with tru's byte-level BPE tokenizer trained on `texts`,
    built by tru's own builder (models/tiny.py) and seeded: `tiny_model(texts, vocab_size=600,
    hidden_size=32, max_length=4096)`. Architecture keys go to LlamaConfig."""
    import torch
    from omegaconf import OmegaConf

    from tru_cli.models import tiny

    def make(texts: list[str], vocab_size: int = 600, max_length: int = 2048, seed: int = 0, **architecture):
        arch = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 4, "max_position_embeddings": max_length, **architecture}
        model_cfg = OmegaConf.create({"architecture": arch, "tokenizer": {"vocab_size": vocab_size},
                                      "max_length": max_length})
        torch.manual_seed(seed)
        return tiny.build_tiny(model_cfg, texts)

    return make
