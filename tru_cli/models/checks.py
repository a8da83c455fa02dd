"""Checks of a local model directory before it is loaded: a readable config.json, safetensors
weights whose header and size agree (a truncated or zeroed file is caught here, not deep inside
torch), no pickled-only checkpoint (tru never unpickles), and a vocabulary that covers every id of
the tokenizer saved beside it. Hub ids are left to the loader. No torch is imported."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded, or None: the 8-byte header length, the JSON header,
    and the tensors' byte ranges against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path} is truncated ({size} bytes)"
        (length,) = struct.unpack("<Q", head)
        if length == 0 or length > size - 8:
            return f"{path} is not a safetensors file (header length {length} in a file of {size} bytes)"
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path} has a corrupt safetensors header"
    if not isinstance(header, dict):
        return f"{path} has a corrupt safetensors header"
    ends = [t["data_offsets"][1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and isinstance(t.get("data_offsets"), list)]
    if ends and max(ends) > size - 8 - length:
        return f"{path} is truncated: its tensors need {max(ends) + 8 + length} bytes, the file has {size}"
    return None


def tokenizer_size(folder: Path) -> int | None:
    """1 + the largest token id of the folder's tokenizer.json (vocabulary and added tokens)."""
    data = _json(folder / "tokenizer.json")
    if data is None:
        return None
    ids = [v for v in ((data.get("model") or {}).get("vocab") or {}).values() if isinstance(v, int)]
    ids += [t.get("id") for t in data.get("added_tokens") or [] if isinstance(t.get("id"), int)]
    return max(ids) + 1 if ids else None


def problems(path, key: str = "model.path") -> list[str]:
    """Every problem of the model directory named by `key` (none for a hub id)."""
    folder = Path(str(path))
    if not folder.is_dir():
        return []  # a hub id, or absent: the loader says what to do
    if (folder / "adapter_config.json").is_file():  # LoRA adapters saved with trainer.lora.merge=false
        return [f"{key}: {p}" for p in (safetensors_problem(f) for f in folder.glob("*.safetensors")) if p]
    found = []
    config = _json(folder / "config.json")
    if config is None:
        found.append(f"{key}={folder} has no readable config.json; point it at a transformers checkpoint")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        found.append(f"{key}={folder} has no .safetensors weights" + (
            f" (only the pickled {', '.join(pickled)}, which tru does not load: unpickling can run code; "
            f"convert it with save_pretrained(safe_serialization=True))" if pickled else ""))
    found += [f"{key}: {p}" for p in (safetensors_problem(w) for w in weights) if p]
    vocab, tokens = (config or {}).get("vocab_size"), tokenizer_size(folder)
    if isinstance(vocab, int) and tokens is not None and tokens > vocab:
        found.append(f"{key}={folder}: its tokenizer has ids up to {tokens - 1} but the model's vocabulary "
                     f"has {vocab} (config.json vocab_size); save the tokenizer that belongs to this model")
    return found
