"""The memory plan printed before training on CUDA (and by `tru unlearn unlearn.plan_only=true`):
a rough per-GPU budget of weights, gradients, optimizer states, a reference copy, activations and
logits for the chosen model, method, trainer and device, and what to change when it does not fit.

Assumptions (stated in the printout too): weights, gradients and AdamW's two states in the
weights' dtype (`device.dtype`), as torch's AdamW keeps them; 8-bit optimizers 1 byte per state;
activations per Korthikanti et al. 2022 (s*b*h*(34 + 5*a*s/h) bytes per layer without
checkpointing, 2*s*b*h per layer plus one layer's worth with it); the loss's logits in bf16 plus an
fp32 copy; ZeRO-3 (device=deepspeed, device=fsdp) shards weights, gradients and states over the
processes. Real use differs by allocator overhead and kernels; the plan is for deciding, not billing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from tru_cli.errors import TruError

log = logging.getLogger("tru")
GiB = 1024 ** 3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LORA_SHAPES = {  # module -> (in, out) in units of the architecture, for Llama-style blocks
    "q_proj": lambda a: (a["hidden_size"], a["hidden_size"]),
    "k_proj": lambda a: (a["hidden_size"], a["hidden_size"] * a["kv_heads"] // a["heads"]),
    "v_proj": lambda a: (a["hidden_size"], a["hidden_size"] * a["kv_heads"] // a["heads"]),
    "o_proj": lambda a: (a["hidden_size"], a["hidden_size"]),
    "gate_proj": lambda a: (a["hidden_size"], a["intermediate_size"]),
    "up_proj": lambda a: (a["hidden_size"], a["intermediate_size"]),
    "down_proj": lambda a: (a["intermediate_size"], a["hidden_size"]),
}


@dataclass
class Plan:
    parts: dict[str, float]  # GiB per GPU
    total: float
    budget: float
    processes: int

    @property
    def fits(self) -> bool:
        return self.total <= self.budget


def architecture(model_cfg: DictConfig) -> dict:
    """The size numbers: `model.size` (published configs), or the tiny model's `architecture`."""
    if model_cfg.get("size"):
        return dict(model_cfg.size)
    arch = model_cfg.get("architecture")
    if not arch:
        raise TruError(f"model={model_cfg.name} has no `size` block for the memory plan; add model.size "
                       "(params, hidden_size, layers, heads, kv_heads, intermediate_size, vocab_size)")
    h, layers, inter = int(arch.hidden_size), int(arch.num_hidden_layers), int(arch.intermediate_size)
    vocab = int(model_cfg.tokenizer.vocab_size)
    heads, kv = int(arch.num_attention_heads), int(arch.num_key_value_heads)
    per_layer = h * h * 2 + 2 * h * (h * kv // heads) + 3 * h * inter
    return {"params": layers * per_layer + vocab * h * (1 if arch.get("tie_word_embeddings") else 2),
            "hidden_size": h, "layers": layers, "heads": heads, "kv_heads": kv,
            "intermediate_size": inter, "vocab_size": vocab}


def lora_params(arch: dict, lora: DictConfig) -> int:
    per_layer = 0
    for name in lora.target_modules:
        if name in LORA_SHAPES:
            fan_in, fan_out = LORA_SHAPES[name](arch)
            per_layer += int(lora.r) * (fan_in + fan_out)
    return per_layer * int(arch["layers"])


def plan(cfg: DictConfig, sequences_per_item: int, reference_copy: bool, length: int | None = None,
         per_device: int | None = None, budget_gib: float | None = None) -> Plan:
    """The plan for sequences of `length` tokens (default model.max_length, the longest allowed),
    `per_device` items per forward (default the trainer's), against `budget_gib` (default the GPU's)."""
    arch = architecture(cfg.model)
    params = float(arch["params"])
    wbytes = DTYPE_BYTES.get(str(cfg.device.dtype), 4)
    adapters = cfg.trainer.get("lora")
    trainable = float(lora_params(arch, adapters)) if adapters else params
    tbytes = 4 if adapters else wbytes  # peft keeps adapters in fp32
    state_bytes = 1 if "8bit" in str(cfg.trainer.get("optim") or "") else tbytes
    processes = int(cfg.device.get("num_processes") or 1)
    shard = processes if cfg.device.get("strategy") in ("fsdp", "deepspeed") else 1
    recipe = cfg.trainer.unlearn
    items = per_device or max(1, min(int(recipe.per_device_batch_size), int(recipe.batch_size) // processes))
    batch = items * sequences_per_item
    s, h, layers, heads = int(length or cfg.model.max_length), int(arch["hidden_size"]), int(arch["layers"]), int(arch["heads"])
    layer_acts = s * batch * h * (34 + 5 * heads * s / h)
    checkpointing = bool(cfg.trainer.get("gradient_checkpointing"))
    acts = layers * 2 * s * batch * h + layer_acts if checkpointing else layers * layer_acts
    parts = {
        "weights": params * wbytes / shard / GiB,
        "gradients": trainable * tbytes / shard / GiB,
        "optimizer states (AdamW, 2 per trainable weight)": 2 * trainable * state_bytes / shard / GiB,
        "reference model copy": params * wbytes / shard / GiB if reference_copy else 0.0,
        "activations" + (" (checkpointed)" if checkpointing else ""): acts / GiB,
        "logits for the loss": batch * s * int(arch["vocab_size"]) * 6 / GiB,
    }
    budget = budget_gib if budget_gib is not None else float(cfg.device.get("gpu_memory_gb") or 80) * 1e9 / GiB
    return Plan(parts, sum(parts.values()), budget, processes)


def largest_batch(recipe: DictConfig, fits, below: int | None = None) -> int | None:
    """The largest per-device batch, at most `below` (default the recipe's per-device batch), that
    divides the recipe's batch (accumulation keeps it) and for which `fits(n)` holds; None if none."""
    batch = int(recipe.batch_size)
    top = min(below if below is not None else int(recipe.per_device_batch_size), batch)
    return next((n for n in range(top, 0, -1) if batch % n == 0 and fits(n)), None)


def meminfo_gib(field: str = "MemAvailable") -> float | None:
    """A /proc/meminfo field in GiB (MemAvailable: what the machine can still give; MemTotal), or None
    where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / GiB
    except OSError:
        return None
    return None


def available_gib() -> float | None:
    return meminfo_gib("MemAvailable")


def held_gib() -> float:
    """What this process holds already (VmRSS: the interpreter, torch, the loaded model)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GiB
    except OSError:
        pass
    return 0.0


def check_host(cfg: DictConfig, longest: int, sequences_per_item: int, reference_copy: bool) -> None:
    """On a CPU, before the first step: the plan for the longest encoded sequence (beyond the loaded
    model) against the machine's memory. A step that cannot fit in the machine at all stops in one
    line naming the per-device batch that does: the kernel would otherwise kill it mid-step and the
    run would be lost. One that fits the machine but not what is free right now (other processes hold
    the rest) is a warning only, since free memory comes and goes. Measured on SmolLM2-135M (TRU on
    MUSE chunks of ~865 tokens, 2 items per forward): plan 11.4 GiB, peak RSS 12.3 GB; 8 items per
    forward (plan 41.1 GiB) were killed on this 24 GiB machine. `device.memory_check=false` skips it."""
    if cfg.device.accelerator == "cuda" or not cfg.device.get("memory_check", True):
        return
    total, available = meminfo_gib("MemTotal"), available_gib()
    if total is None or available is None or not (cfg.model.get("size") or cfg.model.get("architecture")):
        return  # unknown memory or a model without the numbers the plan reads
    # a tenth kept back for the allocator and the interpreter; ddp_sim ranks share the machine
    processes = int(cfg.device.get("num_processes") or 1)
    machine, free = (0.9 * total - held_gib()) / processes, 0.9 * available / processes

    def need(items: int | None = None) -> float:
        p = plan(cfg, sequences_per_item, reference_copy, length=longest, per_device=items)
        return p.total - p.parts["weights"] - p.parts.get("reference model copy", 0.0)

    recipe = cfg.trainer.unlearn
    what = (f"{sequences_per_item} sequences of up to {longest} tokens per item, {recipe.per_device_batch_size} "
            "items per forward")
    if need() <= free:
        return
    if need() <= machine:
        log.warning("unlearning needs about %.1f GiB beyond the loaded model (%s) and %.1f GiB are free now "
                    "(other processes hold the rest): it may be killed", need(), what, free)
        return
    fitting = largest_batch(recipe, lambda n: need(n) <= machine, below=int(recipe.per_device_batch_size) - 1)
    fix = (f"set trainer.unlearn.per_device_batch_size={fitting} (about {need(fitting):.1f} GiB; accumulation "
           f"keeps the batch of {recipe.batch_size})" if fitting else "use a shorter model.max_length or "
           "benchmark.chunk_words")
    raise TruError(f"unlearning needs about {need():.1f} GiB beyond the loaded model ({what}) and this machine has "
                   f"{total:.1f} GiB in all, {machine:.1f} of it left for a step; {fix}, or trainer.gradient_checkpointing=true, or "
                   "device.memory_check=false to try anyway")


def advice(cfg: DictConfig, p: Plan) -> str:
    options = []
    if not cfg.trainer.get("lora"):
        options.append("trainer=lora (adapters: no full gradients or optimizer states)")
    if not cfg.trainer.get("gradient_checkpointing"):
        options.append("trainer.gradient_checkpointing=true")
    if cfg.device.get("strategy") not in ("fsdp", "deepspeed"):
        options.append("device=deepspeed or device=fsdp with device.num_processes=N (ZeRO-3 shards weights, "
                       "gradients and states over N GPUs)")
    options.append("a smaller trainer.unlearn.per_device_batch_size (the effective batch is kept by accumulation)")
    return "; ".join(options)


def describe(cfg: DictConfig, p: Plan) -> str:
    lines = [f"memory plan per GPU ({cfg.model.name}, method={cfg.method.name}, "
             f"{'LoRA' if cfg.trainer.get('lora') else 'full'} training, {cfg.device.dtype}, "
             f"{p.processes} process(es)):"]
    lines += [f"  {name:<52} {gib:8.1f} GiB" for name, gib in p.parts.items() if gib]
    verdict = "fits" if p.fits else "does NOT fit"
    lines.append(f"  {'total (rough)':<52} {p.total:8.1f} GiB  -> {verdict} in {p.budget:.1f} GiB "
                 f"(device.gpu_memory_gb={cfg.device.get('gpu_memory_gb') or 80})")
    if not p.fits:
        lines.append(f"  options: {advice(cfg, p)}")
    return "\n".join(lines)
