"""Weight quantization as an attack (Zhang et al., ICLR 2025): unlearning updates are small next to a
4-bit step, so rounding can put weights back where the original model had them.

`attack.method` picks the quantizer:
- `rtn`: round-to-nearest with per-group absmax scales, dequantised back to the model's dtype ("fake
  quantization"): no package, any device, exactly the rounding an int4/int8 kernel would do.
- `bnb`: bitsandbytes through transformers (LLM.int8 for 8 bits, NF4 for 4), on CUDA or, with
  bitsandbytes >= 0.50, on the CPU.
- `gptq`: GPTQ through transformers' GPTQConfig (GPT-QModel does the work), calibrated on retain text.
- `awq`: AWQ through GPT-QModel's own quantizer (transformers only loads AWQ checkpoints), 4 bits.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig
from packaging.version import Version
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, GPTQConfig

from tru_cli.attacks.recovery import item_logs, mean
from tru_cli.data.items import row_text
from tru_cli.errors import TruError

GPTQ_INSTALL = "pip install 'tru-cli[gptq]' (it brings a CUDA torch)"
# method -> (the import names it needs, the install command that brings them)
PACKAGES = {"bnb": (("bitsandbytes",), "pip install 'bitsandbytes>=0.50'"),
            "gptq": (("gptqmodel", "optimum"), GPTQ_INSTALL),
            "awq": (("gptqmodel",), GPTQ_INSTALL)}
BITS = {"rtn": (4, 8), "bnb": (4, 8), "gptq": (4, 8), "awq": (4,)}
# bitsandbytes runs its int8/NF4 kernels on the CPU from this release on (the one tru was tested with)
BNB_CPU = Version("0.50")


def check(qcfg: DictConfig, on_cuda: bool) -> None:
    """The quantize attack's settings (`attack` or `attack.settings.quantize` of a suite), checked
    before any model is loaded: calibration text for GPTQ/AWQ, then the method, bits and package."""
    if qcfg.method in ("gptq", "awq") and int(qcfg.calibration_items) < 1:
        raise TruError(f"attack.calibration_items={qcfg.calibration_items}; {qcfg.method} needs at least "
                       f"1 retain item to calibrate on (128 is the default)")
    check_method(qcfg.method, qcfg.bits, on_cuda)


def check_method(method: str, bits: int, on_cuda: bool) -> None:
    """One line naming what is missing, before any model is loaded."""
    if method not in BITS:
        raise TruError(f"attack.method={method}; choose {', '.join(BITS)}")
    if int(bits) not in BITS[method]:
        raise TruError(f"attack.bits={bits} with attack.method={method}; choose "
                       f"{' or '.join(map(str, BITS[method]))}")
    names, install = PACKAGES.get(method, ((), ""))
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise TruError(f"attack.method={method} needs {' and '.join(missing)}: {install}, "
                       f"or use attack.method=rtn")
    if method == "bnb" and not on_cuda and Version(importlib.metadata.version("bitsandbytes")) < BNB_CPU:
        raise TruError(f"attack.method=bnb on the CPU needs bitsandbytes>={BNB_CPU} (installed: "
                       f"{importlib.metadata.version('bitsandbytes')}); upgrade it or use device=cuda")


def load_quantized(method: str, path: str, bits: int, group_size: int, device_cfg,
                   calibration: list[str]):
    """The checkpoint at `path`, quantized by `method` (bnb, gptq or awq) and ready to generate."""
    on_cuda = device_cfg.accelerator == "cuda"
    if method == "awq":
        with tempfile.TemporaryDirectory(prefix="tru-awq-") as tmp:
            _awq_quantize(path, bits, group_size, calibration, Path(tmp))
            return _load(tmp, on_cuda, device_cfg)
    if method == "bnb":
        logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_fp16_cast_notice)
        compute = torch.bfloat16 if on_cuda else torch.float32
        config = (BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else
                  BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute))
    else:
        logging.getLogger("optimum.gptq").setLevel(logging.WARNING)  # one INFO line per layer otherwise
        config = GPTQConfig(bits=bits, group_size=group_size, dataset=calibration,
                            tokenizer=AutoTokenizer.from_pretrained(path))
    return _load(path, on_cuda, device_cfg, quantization_config=config)


def _drop_fp16_cast_notice(record: logging.LogRecord) -> bool:
    """int8 casts activations to fp16 by design; bitsandbytes logs that on every matmul (thousands of
    lines per evaluation), so this one message is dropped and its other warnings kept."""
    return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _load(path, on_cuda: bool, device_cfg, **kwargs):
    return AutoModelForCausalLM.from_pretrained(str(path), device_map={"": 0} if on_cuda else {"": "cpu"},
                                                attn_implementation=device_cfg.attn_implementation, **kwargs).eval()


def _awq_quantize(path: str, bits: int, group_size: int, calibration: list[str], out: Path) -> None:
    """AWQ-quantize the checkpoint at `path` with GPT-QModel and save it (weights + tokenizer) to `out`."""
    # GPT-QModel 7.7 sizes its CPU pool as half the cores, then asks it for 2 loader threads: on a
    # 2-core machine its load() raises "requests 2 workers but parent 'cpu' only has 1"
    if (os.cpu_count() or 1) < 4:
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    # deferred: GPT-QModel is the optional [gptq] extra (a CUDA torch), checked by check_method first
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.quantization import METHOD

    qmodel = GPTQModel.load(str(path), QuantizeConfig(bits=bits, group_size=group_size, quant_method=METHOD.AWQ))
    qmodel.quantize(calibration)
    qmodel.save(str(out))


@torch.no_grad()
def rtn_(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Symmetric round-to-nearest of `weight` in place, one absmax scale per group of input columns."""
    rows, cols = weight.shape
    group = group_size if group_size and cols % group_size == 0 else cols
    w = weight.float().reshape(rows, cols // group, group)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax - 1, qmax)
    weight.copy_((q * scale).reshape(rows, cols).to(weight.dtype))
    return weight


def quantize_model_(model, bits: int, group_size: int, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Fake-quantize every nn.Linear weight (not the output head, as int4 kernels leave it); returns
    how many matrices were rounded."""
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith(skip):
            rtn_(module.weight, bits, group_size)
            count += 1
    return count


def run(ctx, acfg):
    """Quantize the unlearned model and, as the control of what rounding alone does, the original;
    score both on the forget items, and the quantized model's retain ROUGE-L."""
    bits, group = int(acfg.bits), int(acfg.group_size)  # method and bits were checked by check()
    index = list(range(len(ctx.rows)))
    if acfg.method == "rtn":
        quantized = copy.deepcopy(ctx.unlearned)
        quantize_model_(quantized, bits, group)
        control = copy.deepcopy(ctx.original)  # the quantized original: what rounding alone does
        quantize_model_(control, bits, group)
    else:  # GPTQ and AWQ calibrate on retain text, never on the forget set they would leak
        calibration = [row_text(r) for r in ctx.retain_rows[:int(acfg.calibration_items)]]
        if not calibration and acfg.method != "bnb":
            raise TruError(f"attack.method={acfg.method} calibrates on retain text and this benchmark's retain "
                           f"set is empty; add its retain file or use attack.method=rtn|bnb")
        quantized, control = (load_quantized(acfg.method, path, bits, group, ctx.cfg.device, calibration)
                              for path in (ctx.unlearned_path, ctx.original_path))
        for model in (quantized, control):  # as loading.load sets it: batched generation pads
            model.generation_config.pad_token_id = ctx.unlearned.generation_config.pad_token_id
    attacked = ctx.scores(quantized, ctx.rows)
    control_scores = ctx.scores(control, ctx.rows)
    main = ctx.probe.main
    extra = {"bits": bits, f"original_quantized_forget_{main}": mean([c[main] for c in control_scores]),
             **ctx.retain_scores(quantized), **ctx.retain_scores(ctx.unlearned, "unlearned_")}
    return ctx.summarize("quantize", attacked, index, extra), item_logs(ctx.rows, attacked)
