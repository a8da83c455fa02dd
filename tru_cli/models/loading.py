"""Loading a model and tokenizer by hub id or local path, with the device's dtype and attention."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from tru_cli.errors import TruError

log = logging.getLogger("tru")
DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def torch_dtype(name: str):
    if name not in DTYPES:
        raise TruError(f"device.dtype={name} is not supported; choose: {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def _offline_hint(path: str) -> str:
    if Path(path).exists():
        return f"{path} exists but is not a transformers checkpoint (config.json and weights expected)"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (f"'{path}' is not a local directory and " +
            ("HF_HUB_OFFLINE=1 forbids the hub" if offline else "the hub did not provide it") +
            "; set model.path=DIR to a downloaded checkpoint")


def load(path: str, device: DictConfig, tokenizer_path: str | None = None):
    """(model, tokenizer) from a hub id or a local directory."""
    path = str(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_path or path))
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(device.dtype), attn_implementation=device.attn_implementation)
    except (OSError, ValueError) as exc:
        log.debug("load failed: %s", exc)
        raise TruError(f"cannot load model: {_offline_hint(path)}") from None
    except Exception as exc:  # a corrupt shard found while reading it (safetensors, torch)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise TruError(f"cannot load model from {path}: {type(exc).__name__}: {first}; the checkpoint is "
                       f"damaged, save or download it again") from None
    if tok.pad_token is None:  # Llama tokenizers ship without one; padding is masked anyway
        tok.pad_token = tok.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def save(model, tokenizer, out_dir: Path) -> None:
    """safetensors weights + tokenizer, loadable with from_pretrained."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def device_of(device: DictConfig):
    if device.accelerator == "cuda":
        if not torch.cuda.is_available():
            raise TruError("device=cuda but no CUDA device is visible; use device=cpu")
        return torch.device("cuda", 0)
    return torch.device("cpu")
