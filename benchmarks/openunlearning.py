"""TOFU evaluation beside OpenUnlearning (locuslab/open-unlearning) on the same weights and data.

    python benchmarks/openunlearning.py build DIR        # the shared workload (below), written once
    python benchmarks/openunlearning.py time DIR [-n 3]  # `tru eval` on it, whole command, median of n

The workload is TOFU's forget10 shape: a random-init 1.3M-parameter Llama (hidden 128, 2 layers,
untied, float32, seed 0) with a byte-level BPE tokenizer, and TOFU-format JSON lists: 400 forget,
3,600 retain, 400 holdout rows of fictitious authors (tru's seeded generator, 200 authors with
paraphrased and five perturbed answers), 400 retain-perturbed rows, and TOFU's own real-author (100)
and world-fact (117) sets from ../shared/data/tofu. The model is saved so that OpenUnlearning's
pinned transformers (4.45) reads it too. A random model never emits EOS, so every one of the 1,017
greedy answers runs to 200 new tokens: the worst case for generation, on both sides alike.

OpenUnlearning's side is run by hand in its own environment (its pinned requirements, torch 2.13.0
on CPU); the overrides that point it at DIR are in ../shared/docs/openunlearning-on-cpu.md, and its
measured seconds are recorded in benchmarks/openunlearning.json, which `make bench` compares with.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
RECORD = Path(__file__).resolve().parent / "openunlearning.json"
ARCHITECTURE = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 4, "max_position_embeddings": 1024, "tie_word_embeddings": False}
SYSTEM_PROMPT = "You are a helpful assistant."  # OpenUnlearning's Llama-3 template_args
# The TOFU file names OpenUnlearning's eval overrides point at (data_files=DIR/data/<name>.json).
SPLITS = ["forget10", "forget10_perturbed", "retain90", "retain_perturbed", "holdout10"]


def build(out: Path) -> None:
    """DIR/data/*.json and DIR/tiny_model, deterministic (seeded data, tokenizer and weights)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tru_cli.data import files, synthetic
    from tru_cli.models import tiny

    if not SHARED_TOFU.is_dir():
        raise SystemExit(f"{SHARED_TOFU} is absent: the workload takes TOFU's real-author and world-fact sets from it")
    splits = synthetic.generate(seed=0, num_authors=200, retain_eval_authors=20)
    data = {name: splits[name] for name in SPLITS}
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        data[name] = files.read_records(SHARED_TOFU / f"{name}.jsonl")
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        (out / "data" / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False))
    texts = [t for rows in data.values() for row in rows for v in row.values()
             for t in (v if isinstance(v, list) else [v]) if isinstance(t, str)]
    tok = tiny.train_tokenizer(texts, 3000, ARCHITECTURE["max_position_embeddings"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **ARCHITECTURE)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model_dir = out / "tiny_model"
    model.save_pretrained(model_dir)  # safetensors, float32
    tok.save_pretrained(model_dir)
    # transformers 4.45 (OpenUnlearning's pin) knows neither the newer tokenizer class name nor a
    # separate chat_template.jinja: name the fast tokenizer and inline the template.
    config_path = model_dir / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config.update(tokenizer_class="PreTrainedTokenizerFast", chat_template=tok.chat_template)
    config_path.write_text(json.dumps(tok_config, indent=2))
    print(f"workload: {out} (sha256 {fingerprint(out)[:12]}; {', '.join(f'{k} {len(v)}' for k, v in data.items())}; "
          f"{sum(p.numel() for p in model.parameters()):,} parameters)")


def eval_command(workload: Path, run_dir: Path, retain_logs: Path | None) -> list[str]:
    """`tru eval` on the workload with OpenUnlearning's prompt (its system message) and settings
    (batch 32, greedy, 200 new tokens: tru's defaults)."""
    cmd = [sys.executable, "-m", "tru_cli", "eval", "model=tiny", f"model.path={workload / 'tiny_model'}",
           f"+model.system_prompt={SYSTEM_PROMPT}", "benchmark=tofu", f"benchmark.data_dir={workload / 'data'}",
           "benchmark.forget_split=forget10", "logger=none", "eval.show_examples=0", f"hydra.run.dir={run_dir}"]
    return cmd + ([f"eval.retain_logs={retain_logs}"] if retain_logs else [])


def time_tru(workload: Path, repeats: int) -> list[float]:
    """Whole-command seconds of `tru eval` on the workload, `repeats` times, after one reference run
    whose logs stand in for the retain model's (as OpenUnlearning's timed runs were given theirs)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "TRU_PROGRESS": "off", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        subprocess.run(eval_command(workload, reference, None), env=env, check=True, capture_output=True)
        for i in range(repeats):
            start = time.perf_counter()
            subprocess.run(eval_command(workload, Path(tmp) / f"run{i}", reference / "logs"), env=env, check=True,
                           capture_output=True)
            seconds.append(time.perf_counter() - start)
    return seconds


def fingerprint(workload: Path) -> str:
    """sha256 of the workload's weights and data files: the record holds for this workload only."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([workload / "tiny_model" / "model.safetensors", workload / "tiny_model" / "tokenizer.json",
                        *(workload / "data").glob("*.json")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def record(workload: Path) -> dict | None:
    """OpenUnlearning's recorded seconds (benchmarks/openunlearning.json) when they were measured on
    this very workload, else None with the reason printed."""
    if not RECORD.is_file():
        print(f"no record of OpenUnlearning's time: {RECORD} is absent")
        return None
    ou = json.loads(RECORD.read_text())
    if ou["workload_sha256"] != fingerprint(workload):
        print(f"{RECORD} was measured on another workload (the builder changed): time OpenUnlearning again")
        return None
    return ou


def compare(repeats: int) -> tuple[float, dict | None]:
    """make bench's row: tru's median whole-command seconds on a freshly built workload, and the record."""
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload"
        build(workload)
        seconds = time_tru(workload, repeats)
        return statistics.median(seconds), record(workload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["build", "time"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("-n", "--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "build":
        build(args.dir)
        return
    seconds = time_tru(args.dir, args.repeats)
    print(f"tru eval: {', '.join(f'{s:.1f}' for s in seconds)} s (median {statistics.median(seconds):.1f} s)")
    ou = record(args.dir)
    if ou:
        print(f"OpenUnlearning (recorded): median {ou['median_s']:.1f} s; tru is "
              f"{ou['median_s'] / statistics.median(seconds):.2f}x faster")


if __name__ == "__main__":
    main()
