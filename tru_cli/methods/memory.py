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

from dataclasses import dataclass

from omegaconf import DictConfig

from tru_cli.errors import TruError

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


def plan(cfg: DictConfig, sequences_per_item: int, reference_copy: bool) -> Plan:
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
    batch = max(1, min(int(recipe.per_device_batch_size), int(recipe.batch_size) // processes)) * sequences_per_item
    s, h, layers, heads = int(cfg.model.max_length), int(arch["hidden_size"]), int(arch["layers"]), int(arch["heads"])
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
    budget = float(cfg.device.get("gpu_memory_gb") or 80) * 1e9 / GiB
    return Plan(parts, sum(parts.values()), budget, processes)


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
