"""Weight quantization as an attack (Zhang et al., ICLR 2025): unlearning updates are small next to a
4-bit step, so rounding can put weights back where the original model had them.

Round-to-nearest with per-group absmax scales, dequantised back to the model's dtype ("fake
quantization"): runs on any device and shows exactly the rounding a real int4/int8 kernel would do.
GPU quantizers (bitsandbytes, GPTQ, AWQ) need CUDA and their packages."""

from __future__ import annotations

import importlib.util

import torch

from tru_cli.errors import TruError

GPU_METHODS = {"bnb": "bitsandbytes", "gptq": "gptqmodel", "awq": "awq"}


def check_method(method: str) -> None:
    if method == "rtn":
        return
    if method not in GPU_METHODS:
        raise TruError(f"attack.method={method}; choose rtn, {', '.join(GPU_METHODS)}")
    if not torch.cuda.is_available():
        raise TruError(f"attack.method={method} needs a CUDA GPU; use attack.method=rtn on this machine")
    if importlib.util.find_spec(GPU_METHODS[method]) is None:
        raise TruError(f"attack.method={method} needs the {GPU_METHODS[method]} package; pip install it "
                       f"or use attack.method=rtn")
    if method != "bnb":  # GPTQ needs a calibration pass, AWQ a pre-quantized checkpoint
        raise TruError(f"attack.method={method} is not wired in this version; use attack.method=bnb or rtn")


def load_bnb(path: str, bits: int, device_cfg):
    """The checkpoint at `path` loaded through bitsandbytes (int8, or NF4 with bf16 compute), as the
    quantization attack of Zhang et al. does on GPU. Written to transformers' documented API but not
    yet run by tru's tests: no GPU was available where it was written."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = (BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else
              BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=torch.bfloat16))
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map={"": 0},
                                                attn_implementation=device_cfg.attn_implementation).eval()


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
