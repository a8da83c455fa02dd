"""benchmarks/gpu.sh: TRU unlearning steps on randomly initialised full-size shapes (no download), for a
lent GPU. For each shape (Llama-3.2-1B, Llama-3-8B from conf/model/*.yaml `size`) and each of full
fine-tuning and LoRA, in bf16: a few TRU steps (target + forget + retain sub-batches, GradDiff), then
tokens/s, model FLOPs utilisation (6 N tokens/s over the GPU's dense bf16 peak; LoRA counts the
same forward/backward FLOPs) and peak memory. `--device cpu --shapes tiny` checks the script itself.
"""

from __future__ import annotations

import argparse
import time

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, from vendor sheets
SHAPES = {"llama3.2-1b": "llama3.2-1b", "llama3-8b": "llama3-8b", "tiny": "tiny"}


def _model(name: str, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tru_cli.config import compose
    from tru_cli.methods import memory

    cfg = compose("unlearn", [f"model={SHAPES[name]}", "logger=none"])
    arch = memory.architecture(cfg.model)
    config = LlamaConfig(hidden_size=arch["hidden_size"], num_hidden_layers=arch["layers"],
                         num_attention_heads=arch["heads"], num_key_value_heads=arch["kv_heads"],
                         intermediate_size=arch["intermediate_size"], vocab_size=arch["vocab_size"],
                         max_position_embeddings=4096)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return cfg, model, sum(p.numel() for p in model.parameters())


def run(name: str, lora: bool, device: str, steps: int, batch: int, seq: int, checkpointing: bool = True) -> dict:
    import torch
    from omegaconf import OmegaConf

    from tru_cli.methods import lora as lora_mod
    from tru_cli.methods.objectives import Objective

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg, model, n_params = _model(name, device, dtype)
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    if lora:
        model = lora_mod.apply(model, OmegaConf.create({"r": 8, "alpha": 16, "dropout": 0.0, "merge": True,
                                                       "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "gate_proj", "up_proj", "down_proj"]}),
                               checkpointing=checkpointing)
    model.train()
    objective = Objective(cfg.method, model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    vocab = model.config.vocab_size

    def batch_of():
        ids = torch.randint(0, vocab, (batch, seq), device=device)
        labels = ids.clone()
        labels[:, : seq // 4] = -100  # a prompt part, as in QA data
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for step in range(steps):
        inputs = {part: batch_of() for part in ("target", "forget", "retain")}
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss, _ = objective(model, inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up kernels and allocator
            timings.append(time.perf_counter() - start)
    seconds = sum(timings) / max(len(timings), 1)
    tokens = 3 * batch * seq
    out = {"shape": name, "mode": "LoRA" if lora else "full", "params_b": n_params / 1e9,
           "checkpointing": checkpointing, "batch": batch, "tokens_per_s": tokens / seconds, "step_s": seconds}
    if device == "cuda":
        gpu = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
        # 6N per token for forward+backward, plus 2N for the recomputed forward of checkpointing
        flops = (8 if checkpointing else 6) * n_params
        out["mfu"] = (flops * tokens / seconds) / (peak * 1e12) if peak else None
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 1024 ** 3
        out["gpu"] = gpu
    del model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="llama3.2-1b,llama3-8b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="sequences per sub-batch (target, forget, retain)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--modes", default="full,lora", help="full, lora or both (comma-separated)")
    parser.add_argument("--checkpointing", default="on", choices=["on", "off", "both"],
                        help="gradient checkpointing (off trades memory for the recomputed forward)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes to try (default: --batch)")
    args = parser.parse_args()
    checkpointing = {"on": (True,), "off": (False,), "both": (True, False)}[args.checkpointing]
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
    rows = []
    for name in args.shapes.split(","):
        for lora in [m == "lora" for m in args.modes.split(",")]:
            for ckpt in checkpointing:
                for batch in batches:
                    try:
                        rows.append(run(name, lora, args.device, args.steps, batch, args.seq, ckpt))
                    except Exception as exc:  # e.g. out of memory: report it and go on with the next
                        rows.append({"shape": name, "mode": "LoRA" if lora else "full", "checkpointing": ckpt,
                                     "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:120]})
                        if args.device == "cuda":
                            import torch

                            torch.cuda.empty_cache()
                    print(rows[-1], flush=True)
    print("\nshape        mode  ckpt  batch  params(B)  tokens/s    MFU    peak GiB")
    for r in rows:
        head = f"{r['shape']:<12} {r['mode']:<5} {'on' if r['checkpointing'] else 'off':<5} {r['batch']:>5}"
        if "error" in r:
            print(f"{head}  error: {r['error']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        print(f"{head} {r['params_b']:9.2f} {r['tokens_per_s']:9.0f} {mfu:>7} {peak:>10}")


if __name__ == "__main__":
    main()
