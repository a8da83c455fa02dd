"""Optional packages that a run does not use, kept from being imported by the libraries that would.

peft imports bitsandbytes whenever it is installed (peft/helpers.py runs at `import peft`, which
transformers' Trainer does), and bitsandbytes' import wraps its ops in torch.compile, which pulls in
torch._dynamo and torch._inductor, and asks the Hugging Face hub for a CPU kernel (a warning on every
offline run). Measured on 2 idle cores in `make install`'s environment (it installs the quantize
extra): `import torch, hydra, typer; from transformers import Trainer, LlamaForCausalLM,
AutoTokenizer` took 5.75 s with bitsandbytes and 4.21 s without. Only the quantize attack's bnb
method and the 8-bit optimizers use it, so every other `tru` process holds it out.

A `None` in sys.modules is Python's own way to do that: `import bitsandbytes` then raises
ImportError and `importlib.util.find_spec` returns None, which is how peft, transformers and
accelerate ask whether it is installed, so they all take their no-bitsandbytes paths.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

BITSANDBYTES = "bitsandbytes"


def _quantize_settings(cfg: DictConfig) -> list[DictConfig]:
    """The quantize attack's settings in `cfg`: the attack itself, or the one inside a suite."""
    attack = cfg.get("attack")
    if not isinstance(attack, DictConfig):
        return []
    if attack.get("name") == "quantize":
        return [attack]
    settings = attack.get("settings")
    return [s for s in settings.values() if isinstance(s, DictConfig) and s.get("name") == "quantize"] if settings else []


def uses_bitsandbytes(cfg: DictConfig) -> bool:
    """Whether a run may import bitsandbytes: a quantize attack by any method but the package-free
    RTN, or an 8-bit optimizer (trainer.optim=adamw_bnb_8bit, paged_adamw_8bit, ...)."""
    if any(q.get("method") != "rtn" for q in _quantize_settings(cfg)):
        return True
    optim = str(OmegaConf.select(cfg, "trainer.optim", default="") or "")
    return "8bit" in optim or "bnb" in optim


def hold_out_unused(configs: list[DictConfig]) -> list[str]:
    """Hold bitsandbytes out of this process unless one of `configs` (every point of a sweep) may use
    it, or it is imported already; returns the packages held out."""
    if BITSANDBYTES in sys.modules or any(uses_bitsandbytes(cfg) for cfg in configs):
        return []
    sys.modules[BITSANDBYTES] = None
    return [BITSANDBYTES]
