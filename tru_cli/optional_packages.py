"""Optional packages that a run does not use, kept from being imported by the libraries that would.

peft imports bitsandbytes whenever it is installed: before 0.22 at `import peft` (peft/helpers.py,
which transformers' Trainer imports), from 0.22.0 on when it wraps a model in LoRA (its layer
dispatch). bitsandbytes' import wraps its ops in torch.compile, which pulls in
torch._dynamo and torch._inductor, and asks the Hugging Face hub for a CPU kernel (a warning on every
offline run). Measured on 2 idle cores in `make install`'s environment (it installs the quantize
extra): `import torch, hydra, typer; from transformers import Trainer, LlamaForCausalLM,
AutoTokenizer` took 5.75 s with bitsandbytes and 4.21 s without. Only the quantize attack's bnb
method and the 8-bit optimizers use it, so every other `tru` process holds it out.

A `None` in sys.modules is Python's own way to do that: `import bitsandbytes` then raises
ImportError and `importlib.util.find_spec` returns None, which is how peft, transformers and
accelerate ask whether it is installed, so they all take their no-bitsandbytes paths.

transformers also imports two packages that tru needs, but not from transformers:
- datasets (with pandas and pyarrow), which its Trainer imports only to recognise `datasets.Dataset`
  inputs. tru hands it torch Datasets.
- scipy.optimize, imported by its modeling code only for DETR-family losses.
`import_transformers` holds both out while transformers' modules first import, so transformers
records them as absent, then lets them back for tru's own deferred imports (parquet files, hub
datasets, lm-eval, the KS test). Measured on 2 idle cores after `import torch, transformers`,
median of 3: `from transformers import Trainer, LlamaForCausalLM` took 2.03 s plain and 1.49 s
with both held out.
"""

from __future__ import annotations

import importlib
import sys

from omegaconf import DictConfig, OmegaConf

BITSANDBYTES = "bitsandbytes"
UNUSED_BY_TRANSFORMERS = ("datasets", "scipy")  # see the module docstring


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


def import_transformers(*modules: str) -> None:
    """Import transformers' `modules` (e.g. "transformers.trainer") with UNUSED_BY_TRANSFORMERS held
    out, unless the modules or a package are imported already.

    transformers asks `is_<package>_available()`, an lru_cached find_spec, so the answer it gets in
    the window (absent) stays its answer for the process. Where that check is not cached (another
    transformers release), later calls would say present to modules that never imported the
    package, so that package is not held out."""
    from transformers.utils import import_utils

    held: dict[str, object] = {}
    if not all(module in sys.modules for module in modules):
        for package in UNUSED_BY_TRANSFORMERS:
            check = getattr(import_utils, f"is_{package}_available", None)
            if package not in sys.modules and hasattr(check, "cache_clear"):
                check.cache_clear()
                sys.modules[package] = None
                held[package] = check
    try:
        for module in modules:
            importlib.import_module(module)
        for check in held.values():
            check()  # cached now: absent, as the modules saw it
    finally:
        for package in held:
            if sys.modules.get(package, "") is None:
                del sys.modules[package]
