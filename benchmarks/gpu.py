"""benchmarks/gpu.sh: TRU unlearning steps on randomly initialised full-size shapes (no download), for a
lent GPU. For each shape (Llama-3.2-1B, Llama-3-8B from conf/model/*.yaml `size`) and each of full
fine-tuning and LoRA, in bf16: a few TRU steps (target + forget + retain sub-batches of variable-length
QA rows, GradDiff), then tokens/s (real tokens, padding not counted), model FLOPs utilisation (6 N
tokens/s over the GPU's dense bf16 peak, 8 N with checkpointing's recomputed forward; LoRA counts the
same forward/backward FLOPs) and peak memory. Each setting can be compared with and without:
  --checkpointing on|off|both   gradient checkpointing;
  --fused-ce off|on|both        fused linear cross-entropy (Liger Kernel, the optional `gpu` extra): the
                                loss is computed from the last hidden states in chunks, so the
                                (tokens x 128k-vocabulary) logits are never materialised;
  --packing off|on|both         padding-free batches: transformers' DataCollatorWithFlattening packs each
                                sub-batch into one row with restarting position ids (sdpa or flash).
Without fused CE or packing the step is tru's own (methods/objectives.Objective on padded batches);
with either, each part's mean token NLL comes from the model's `labels` loss, as those need.
`--device cpu --shapes tiny` checks the script itself; a flag the machine cannot run fails in one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
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


def check_flags(device: str, fused_ce: bool) -> str | None:
    """One line saying why this machine cannot run a flag, or None."""
    if fused_ce and importlib.util.find_spec("liger_kernel") is None:
        return "--fused-ce needs Liger Kernel: pip install -e '.[gpu]' (CUDA and Triton)"
    if fused_ce and device != "cuda":
        return "--fused-ce needs a CUDA GPU (Liger's kernels are written in Triton); use --fused-ce off on a CPU"
    return None


def qa_rows(vocab: int, batch: int, seq: int, rng: random.Random) -> list[dict]:
    """Variable-length QA rows (a quarter to all of `seq` tokens, the first quarter a prompt without
    labels), as the forget, retain and target sets are: padding then costs what it costs in training."""
    rows = []
    for _ in range(batch):
        n = rng.randint(max(2, seq // 4), seq)
        ids = [rng.randrange(vocab) for _ in range(n)]
        rows.append({"input_ids": ids, "labels": [-100] * (n // 4) + ids[n // 4:]})
    return rows


def run(name: str, lora: bool, device: str, steps: int, batch: int, seq: int, checkpointing: bool = True,
        fused_ce: bool = False, packing: bool = False) -> dict:
    import torch
    from omegaconf import OmegaConf
    from transformers import DataCollatorWithFlattening

    from tru_cli.data.encoding import pad
    from tru_cli.methods import lora as lora_mod
    from tru_cli.methods.objectives import Objective

    if fused_ce:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        # before the model is built: swaps LlamaForCausalLM's loss for the fused linear cross-entropy
        apply_liger_kernel_to_llama(fused_linear_cross_entropy=True, cross_entropy=False)
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
    alpha = float(cfg.method.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    vocab = model.config.vocab_size
    rng = random.Random(0)
    flatten = DataCollatorWithFlattening(return_tensors="pt")

    def to_device(batch):
        return {k: v.to(device) for k, v in batch.items()}

    def part_nll(rows):
        """Mean token NLL of one part through the model's own loss (fused or not), padded or packed."""
        batch = to_device(flatten(rows) if packing else pad(rows, 0))
        batch.pop("attention_mask" if packing else "position_ids", None)
        return model(**batch).loss

    def step_loss(parts):
        if not (fused_ce or packing):
            return objective(model, {k: to_device(pad(rows, 0)) for k, rows in parts.items()})[0]
        return part_nll(parts["target"]) + alpha * (-part_nll(parts["forget"]) + part_nll(parts["retain"]))

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timings, tokens = [], 0
    for step in range(steps):
        parts = {part: qa_rows(vocab, batch, seq, rng) for part in ("target", "forget", "retain")}
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = step_loss(parts)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up kernels and allocator
            timings.append(time.perf_counter() - start)
            tokens += sum(len(r["input_ids"]) for rows in parts.values() for r in rows)
    seconds = sum(timings)
    out = {"shape": name, "mode": "LoRA" if lora else "full", "params_b": n_params / 1e9,
           "checkpointing": checkpointing, "fused_ce": fused_ce, "packing": packing, "batch": batch,
           "tokens_per_s": tokens / seconds if seconds else 0.0, "step_s": seconds / max(len(timings), 1)}
    if device == "cuda":
        gpu = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
        # 6N per token for forward+backward, plus 2N for the recomputed forward of checkpointing
        flops = (8 if checkpointing else 6) * n_params
        out["mfu"] = (flops * out["tokens_per_s"]) / (peak * 1e12) if peak else None
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 1024 ** 3
        out["gpu"] = gpu
    model = opt = objective = None  # free the weights before the next setting
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="llama3.2-1b,llama3-8b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="sequences per sub-batch (target, forget, retain)")
    parser.add_argument("--seq", type=int, default=512, help="longest sequence; rows are seq/4 to seq tokens")
    parser.add_argument("--modes", default="full,lora", help="full, lora or both (comma-separated)")
    both = {"on": (True,), "off": (False,), "both": (False, True)}
    parser.add_argument("--checkpointing", default="on", choices=list(both),
                        help="gradient checkpointing (off trades memory for the recomputed forward)")
    parser.add_argument("--fused-ce", default="off", choices=list(both),
                        help="fused linear cross-entropy (Liger Kernel; the `gpu` extra, CUDA)")
    parser.add_argument("--packing", default="off", choices=list(both),
                        help="padding-free packing (DataCollatorWithFlattening)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes to try (default: --batch)")
    args = parser.parse_args()
    for fused in both[args.fused_ce]:
        problem = check_flags(args.device, fused)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(2)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
    rows = []
    for name in args.shapes.split(","):
        for lora in [m == "lora" for m in args.modes.split(",")]:
            for ckpt in both[args.checkpointing]:
                for fused in both[args.fused_ce]:
                    for packing in both[args.packing]:
                        for batch in batches:
                            try:
                                rows.append(run(name, lora, args.device, args.steps, batch, args.seq, ckpt,
                                                fused, packing))
                            except Exception as exc:  # e.g. out of memory: report it and go on with the next
                                rows.append({"shape": name, "mode": "LoRA" if lora else "full",
                                             "checkpointing": ckpt, "fused_ce": fused, "packing": packing,
                                             "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:120]})
                                if args.device == "cuda":
                                    import torch

                                    torch.cuda.empty_cache()
                            print(rows[-1], flush=True)
    print("\nshape        mode  ckpt fused pack batch  params(B)  tokens/s    MFU    peak GiB")
    for r in rows:
        flags = " ".join(f"{'on' if r[k] else 'off':<4}" for k in ("checkpointing", "fused_ce", "packing"))
        head = f"{r['shape']:<12} {r['mode']:<5} {flags} {r['batch']:>5}"
        if "error" in r:
            print(f"{head}  error: {r['error']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        print(f"{head} {r['params_b']:9.2f} {r['tokens_per_s']:9.0f} {mfu:>7} {peak:>10}")


if __name__ == "__main__":
    main()
