"""make bench: speed of tru's hot loops beside a baseline measured in the same run, printed as a table
and written to benchmarks/results.json (one entry per measure: tru, baseline, ratio, unit), so a
run's figures can be compared with the last one.

1. unlearn_step_vs_hand_loop: TRU step tokens/s (target + forget + retain forward/backward, AdamW)
   through tru's UnlearnTrainer (transformers.Trainer) against a hand-written PyTorch loop doing the
   same work: the same batches (the Trainer's own sampler and collator), loss, optimizer
   implementation and clipping. Medians of `--repeats` pairs in alternating order, fresh model each.
2. tofu_eval_vs_one_at_a_time: TOFU evaluation items/s (length-sorted batches, all answer variants of
   a set in shared batched forwards, batched greedy generation) against one sequence and one
   generation at a time, on the same items.
   tofu_eval_vs_openunlearning: `tru eval` (whole command, median of `--repeats`) on the workload of
   benchmarks/openunlearning.py (TOFU forget10 shape, a random tiny Llama) against OpenUnlearning's
   recorded time on the very same weights and data (benchmarks/openunlearning.json).
3. npo_memory_vs_held_reference: peak memory of NPO unlearning with reference statistics precomputed
   once (one model in memory) against holding a frozen reference copy, each in a fresh process, on a
   ~25M-parameter tiny-architecture model so the weights dominate the process's baseline.
4. seconds_to_first_step: `tru unlearn experiments=smoke` from the outside, process start to the
   first training step (results.json's timing marks), beside the floor: the time from process start
   until Python alone has imported torch, transformers' Trainer and Llama, Hydra and Typer
   (bitsandbytes, datasets and scipy held out and the garbage collector off, as tru imports them);
   and the last step to exit.
5. SmolLM2-135M-Instruct (rows 1-2 again, in a child process whose peak memory is reported).
6. Wall time of one evaluation of a fresh tiny model on each real benchmark's local slice in
   ../shared/data (TOFU forget05, MUSE-News, WMDP-Bio through lm-eval), `--bench-items` per set.
Numbers depend on the machine and on what else runs on it: run it alone. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")


def _cfg(overrides):
    from tru_cli.config import compose

    return compose("unlearn", ["logger=none", *overrides])


def _tiny(cfg):
    from tru_cli import benchmarks
    from tru_cli.models import tiny

    return tiny.build_tiny(cfg.model, benchmarks.of(cfg.benchmark).all_text(cfg.benchmark))


def _smollm2(cfg):
    """SmolLM2-135M-Instruct, converted from its GGUF into the store once (model=smollm2-135m)."""
    from tru_cli import artifacts
    from tru_cli.models import loading

    return loading.load(artifacts.base_model(cfg), cfg.device)


def bench_unlearn(steps: int, build=_tiny, overrides=(), repeats: int = 3) -> tuple[float, float]:
    """Median tokens/s of the TRU step through UnlearnTrainer and through a hand-written loop, over
    `repeats` pairs in alternating order, each on a fresh model, on the very same batches."""
    import itertools
    import statistics
    import tempfile
    from pathlib import Path

    import torch
    from transformers import set_seed

    from tru_cli import artifacts, benchmarks
    from tru_cli.data import sources
    from tru_cli.data.encoding import PromptFormatter, UnlearnCollator
    from tru_cli.methods import unlearn
    from tru_cli.methods.objectives import Objective, needed_parts
    from tru_cli.methods.trainer import ForgetRetainDataset, UnlearnTrainer, quiet, training_args

    cfg = _cfg(list(overrides))
    set_seed(0)
    model, tok = build(cfg)
    fmt = PromptFormatter(tok, cfg.model)
    forget = sources.load_split(cfg.benchmark, "forget10")
    retain = [fmt.encode(r["question"], r["answer"]) for r in benchmarks.of(cfg.benchmark).retain_rows(cfg.benchmark)]
    with tempfile.TemporaryDirectory() as tmp:
        artifacts.build_targets(cfg, Path(tmp) / "targets.jsonl")
        rows = unlearn.build_rows(cfg, fmt, forget, str(Path(tmp) / "targets.jsonl"), needed_parts(cfg.method))
    data = ForgetRetainDataset(rows, retain, seed=0)
    args = training_args(cfg, cfg.trainer.unlearn, "/tmp/tru_bench_trainer")
    args.num_train_epochs = steps * int(cfg.trainer.unlearn.batch_size) / len(data)
    collate = UnlearnCollator(tok.pad_token_id)

    def trainer_for(model):
        return quiet(UnlearnTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                                    objective=Objective(cfg.method, model)))

    def with_trainer() -> float:
        set_seed(0)
        trainer = trainer_for(build(cfg)[0])
        start = time.perf_counter()
        trainer.train()
        return trainer.tokens_seen / (time.perf_counter() - start)

    def by_hand() -> float:
        """The same model, batches (the Trainer's own sampler and collator), loss, optimizer and
        gradient clipping in a plain PyTorch loop."""
        set_seed(0)
        model = build(cfg)[0]
        loader = trainer_for(model).get_train_dataloader()
        objective = Objective(cfg.method, model)
        # the optimizer implementation the Trainer uses (trainer.optim), so the ratio is the Trainer's own price
        opt = torch.optim.AdamW(model.parameters(), lr=float(cfg.trainer.unlearn.lr),
                                weight_decay=float(cfg.trainer.unlearn.weight_decay),
                                fused=str(cfg.trainer.optim) == "adamw_torch_fused")
        model.train()
        start = time.perf_counter()
        for inputs in itertools.islice(loader, steps):
            loss, _ = objective(model, inputs)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.trainer.unlearn.max_grad_norm))
            opt.step()
        return objective.tokens_seen / (time.perf_counter() - start)

    del model
    ours, naive = [], []
    for i in range(repeats):
        for run in ((with_trainer, by_hand) if i % 2 == 0 else (by_hand, with_trainer)):
            (ours if run is with_trainer else naive).append(run())
    return statistics.median(ours), statistics.median(naive)


def seconds_to_first_step(repeats: int) -> dict:
    """`tru unlearn` on the tiny model (experiments=smoke, target model and targets already in the
    store, wandb offline as a user gets it here), timed from outside: process start to the first
    training step and last step to exit (from results.json's `timing` marks), beside the floor, the
    time from process start until Python has imported torch, transformers' Trainer and Llama, Hydra and
    Typer alone, with bitsandbytes, datasets and scipy held out and the garbage collector off, as tru
    imports them (tru_cli/optional_packages.py, tru_cli/collector.py). The floor ends at its last
    import, not at its exit: a process with torch loaded takes most of a second to tear down."""
    import json
    import statistics
    import subprocess
    import sys
    import tempfile

    env = {**os.environ, "WANDB_MODE": "offline", "TRU_PROGRESS": "off"}
    floor_cmd = [sys.executable, "-c", "import gc, sys, time; gc.disable(); sys.modules['bitsandbytes'] = None; "
                 "import torch, hydra, typer; from tru_cli.optional_packages import import_transformers; "
                 "import_transformers('transformers.modeling_utils', 'transformers.trainer'); "
                 "from transformers import Trainer, LlamaForCausalLM, AutoTokenizer; print(time.time())"]
    runs, floors, marks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tru_cli", "unlearn", "experiments=smoke", f"paths.store={tmp}/store"]
        subprocess.run([*cmd, f"hydra.run.dir={tmp}/warm"], env=env, cwd=tmp, check=True, capture_output=True)
        for i in range(repeats):
            start = time.time()
            imported = subprocess.run(floor_cmd, env=env, check=True, capture_output=True, text=True).stdout
            floors.append(float(imported.split()[-1]) - start)  # its last line; a library may print before it
            start = time.time()
            subprocess.run([*cmd, f"hydra.run.dir={tmp}/run{i}"], env=env, cwd=tmp, check=True, capture_output=True)
            end = time.time()
            timing = json.loads(Path(f"{tmp}/run{i}/results.json").read_text())["timing"]
            runs.append((timing["first_step"] - start, end - timing["last_step"]))
            marks.append({k: v - start for k, v in timing.items()})
    split = {k: statistics.median(m[k] for m in marks) for k in marks[0]}
    return {"first": statistics.median(r[0] for r in runs), "after": statistics.median(r[1] for r in runs),
            "floor": statistics.median(floors), "split": split}


def bench_eval(items: int, max_new_tokens: int, build=_tiny, overrides=()) -> tuple[float, float, int]:
    import torch

    from tru_cli.benchmarks import tofu as tofu_benchmark
    from tru_cli.data.encoding import PromptFormatter, pad
    from tru_cli.methods.losses import token_nll
    from tru_cli.metrics import tofu

    cfg = _cfg([f"eval.max_new_tokens={max_new_tokens}", "eval.batch_size=32", *overrides])
    model, tok = build(cfg)
    model.eval()
    fmt = PromptFormatter(tok, cfg.model)
    sets = tofu_benchmark.eval_sets(cfg.benchmark)
    rows = (sets["forget"] + sets["retain"] + sets["real_authors"] + sets["world_facts"])[:items]
    start = time.perf_counter()
    tofu_benchmark.item_records(model, fmt, rows, cfg)
    ours = len(rows) / (time.perf_counter() - start)

    start = time.perf_counter()
    with torch.no_grad():
        for row in rows:  # naive: every answer variant and the generation one at a time
            answers = [row["answer"], row.get("paraphrased_answer"), *(row.get("perturbed_answer") or [])]
            for answer in filter(None, answers):
                enc = pad([fmt.encode(row["question"], answer)], tok.pad_token_id)
                token_nll(model(input_ids=enc["input_ids"]).logits, enc["labels"])
            ids = torch.tensor([fmt.prompt_ids(row["question"])])
            out = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            gen = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            tofu.rouge_recalls([row["answer"]], [gen])
    naive = len(rows) / (time.perf_counter() - start)
    return ours, naive, len(rows)


MEMORY_MODEL = ["model.architecture.hidden_size=512", "model.architecture.intermediate_size=1536",
                "model.architecture.num_hidden_layers=8", "model.architecture.num_attention_heads=8",
                "model.architecture.num_key_value_heads=8"]


def memory_child(reference: str) -> None:
    """Runs in its own process: a few NPO steps, then print the peak RSS in MiB."""
    import resource
    import tempfile
    from pathlib import Path

    from tru_cli import artifacts
    from tru_cli.models import loading

    cfg = _cfg(["method=npo", f"method.reference={reference}", "model.recipe.unlearn_epochs=0.3",
                *MEMORY_MODEL])
    model, tok = _tiny(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        loading.save(model, tok, Path(tmp) / "start")
        del model
        artifacts.build_unlearned(cfg, str(Path(tmp) / "start"), None, Path(tmp) / "out")
    print(f"PEAK_MIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


def bench_memory() -> tuple[float, float, int]:
    import subprocess
    import sys

    peaks = {}
    for reference in ("precompute", "model"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", reference], capture_output=True,
                             text=True, check=True).stdout
        peaks[reference] = float(out.split("PEAK_MIB")[-1].split()[0])
    from tru_cli.models import tiny

    model, _ = tiny.build_tiny(_cfg(MEMORY_MODEL).model, ["a b c d"] * 50)
    params = sum(p.numel() for p in model.parameters())
    return peaks["precompute"], peaks["model"], params


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = {  # name -> overrides (the slices of ../shared/data)
    "TOFU forget05": ["benchmark=tofu", f"benchmark.data_dir={SHARED / 'tofu'}", "benchmark.forget_split=forget05"],
    "MUSE-News": ["benchmark=muse_news", f"benchmark.data_dir={SHARED / 'muse' / 'news'}"],
    "WMDP-Bio": ["benchmark=wmdp_bio", f"benchmark.data_dir={SHARED / 'wmdp'}"],
}


def bench_real(items: int) -> dict[str, float]:
    """Seconds of `tru eval`'s evaluation (model load included) per benchmark slice."""
    import logging
    import tempfile

    from tru_cli import benchmarks
    from tru_cli.models import loading

    logging.getLogger("tru").setLevel(logging.ERROR)  # the slices lack some files: expected warnings
    out = {}
    for name, overrides in REAL.items():
        cfg = _cfg([*overrides, f"eval.max_items={items}", "eval.show_examples=0"])
        with tempfile.TemporaryDirectory() as tmp:
            model, tok = _tiny(cfg)
            loading.save(model, tok, Path(tmp) / "model")
            start = time.perf_counter()
            benchmarks.evaluate(cfg, str(Path(tmp) / "model"), Path(tmp) / "eval", None)
            out[name] = time.perf_counter() - start
    return out


SMOL = ["model=smollm2-135m", "model.max_length=256"]


def smol_child(steps: int, items: int, max_new_tokens: int) -> None:
    """Runs in its own process (so its peak memory is its own): the SmolLM2 rows, printed as JSON."""
    import json
    import resource

    ours_u, naive_u = bench_unlearn(steps, _smollm2, SMOL, repeats=2)  # one pair in each order
    ours_e, naive_e, n = bench_eval(items, max_new_tokens, _smollm2, SMOL)
    print("SMOL_JSON " + json.dumps({"unlearn": [ours_u, naive_u], "eval": [ours_e, naive_e, n],
                                     "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_smollm2(steps: int, items: int, max_new_tokens: int) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--smol-child", "--smol-steps", str(steps), "--smol-items",
                          str(items), "--max-new-tokens", str(max_new_tokens)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the SmolLM2 bench failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.split("SMOL_JSON")[-1])


RESULTS = Path(__file__).resolve().parent / "results.json"


def entry(tru: float, baseline: float | None, unit: str, ratio: float | None = None) -> dict:
    """One measure of results.json: ratio > 1 means tru is better (faster, lighter, or closer to the
    floor); a measure without a baseline has baseline and ratio null."""
    if baseline is not None and ratio is None:
        ratio = tru / baseline
    return {"tru": round(tru, 4), "baseline": None if baseline is None else round(baseline, 4),
            "ratio": None if ratio is None else round(ratio, 4), "unit": unit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="unlearning steps timed per loop")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are reported")
    parser.add_argument("--items", type=int, default=120, help="eval items timed per way")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="generation cap (random weights run to the cap)")
    parser.add_argument("--bench-items", type=int, default=50, help="items per set in the real-benchmark evals")
    parser.add_argument("--smol-steps", type=int, default=6, help="SmolLM2 unlearning steps timed per loop")
    parser.add_argument("--smol-items", type=int, default=24, help="SmolLM2 eval items timed per way")
    parser.add_argument("--no-smol", action="store_true", help="skip the SmolLM2 rows")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the machine-readable results go")
    parser.add_argument("--memory-child", choices=["precompute", "model"], help=argparse.SUPPRESS)
    parser.add_argument("--smol-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smol_child:
        from tru_cli.runner import _quiet_libraries

        _quiet_libraries()
        smol_child(args.smol_steps, args.smol_items, args.max_new_tokens)
        return
    if args.memory_child:
        from tru_cli.runner import _quiet_libraries

        _quiet_libraries()
        memory_child(args.memory_child)
        return
    import json

    from rich.console import Console
    from rich.table import Table

    from tru_cli.runner import _quiet_libraries

    _quiet_libraries()
    import torch

    results: dict[str, dict] = {}
    ours_u, naive_u = bench_unlearn(args.steps, repeats=args.repeats)
    results["unlearn_step_vs_hand_loop"] = entry(ours_u, naive_u, "tokens/s")
    ours_e, naive_e, n = bench_eval(args.items, args.max_new_tokens)
    results["tofu_eval_vs_one_at_a_time"] = entry(ours_e, naive_e, "items/s")
    import openunlearning  # benchmarks/openunlearning.py, beside this file

    tru_s, ou = openunlearning.compare(args.repeats) if SHARED.is_dir() else (None, None)
    if ou:
        results["tofu_eval_vs_openunlearning"] = entry(tru_s, ou["median_s"], "s (whole command; baseline: "
                                                       "OpenUnlearning's recorded time)", ou["median_s"] / tru_s)
    lean, held, params = bench_memory()
    results["npo_memory_vs_held_reference"] = entry(lean, held, "MiB peak RSS", held / lean)
    fixed = seconds_to_first_step(args.repeats)
    results["seconds_to_first_step"] = entry(fixed["first"], fixed["floor"], "s (baseline: import floor)",
                                             fixed["floor"] / fixed["first"])
    results["seconds_after_last_step"] = entry(fixed["after"], None, "s")
    table = Table(title=f"tru bench (tiny model, {torch.get_num_threads()} threads, CPU; medians of "
                        f"{args.repeats} alternating repeats where marked)")
    for col in ("measure", "tru", "baseline", "ratio"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row(f"unlearn TRU step, tokens/s ({args.steps} steps; baseline: hand loop; median)", f"{ours_u:,.0f}",
                  f"{naive_u:,.0f}", f"{ours_u / naive_u:.2f}x")
    table.add_row(f"TOFU eval, items/s ({n} items, <= {args.max_new_tokens} new tokens; baseline: one at a time)",
                  f"{ours_e:.1f}", f"{naive_e:.1f}", f"{ours_e / naive_e:.2f}x")
    if ou:
        table.add_row(f"TOFU eval, forget10 shape, seconds (whole command, median; baseline: OpenUnlearning "
                      f"{ou['commit']}, recorded)", f"{tru_s:.1f}", f"{ou['median_s']:.1f}", f"{ou['median_s'] / tru_s:.2f}x")
    else:
        table.add_row("TOFU eval beside OpenUnlearning: skipped (no record for this workload, or no ../shared)",
                      "-", "-", "-")
    table.add_row(f"NPO peak memory, MiB ({params / 1e6:.0f}M params; baseline: held reference)",
                  f"{lean:,.0f}", f"{held:,.0f}", f"{held / lean:.2f}x less")
    table.add_row("seconds to the first step (tru unlearn, smoke; baseline: importing torch+transformers+hydra)",
                  f"{fixed['first']:.2f}", f"{fixed['floor']:.2f}", f"{fixed['first'] - fixed['floor']:+.2f} s")
    table.add_row("seconds from the last step to exit", f"{fixed['after']:.2f}", "-", "-")
    split = ", ".join(f"{k} {v:.2f}" for k, v in sorted(fixed["split"].items(), key=lambda kv: kv[1]))
    if not args.no_smol:
        smol = bench_smollm2(args.smol_steps, args.smol_items, args.max_new_tokens)
        (ours, naive), (e_ours, e_naive, e_n) = smol["unlearn"], smol["eval"]
        results["smollm2_unlearn_step_vs_hand_loop"] = entry(ours, naive, "tokens/s")
        results["smollm2_tofu_eval_vs_one_at_a_time"] = entry(e_ours, e_naive, "items/s")
        results["smollm2_peak_memory"] = entry(smol["peak_mib"], None, "MiB peak RSS")
        table.add_row(f"SmolLM2-135M: unlearn TRU step, tokens/s ({args.smol_steps} steps)", f"{ours:,.0f}",
                      f"{naive:,.0f}", f"{ours / naive:.2f}x")
        table.add_row(f"SmolLM2-135M: TOFU eval, items/s ({e_n} items, <= {args.max_new_tokens} new tokens)",
                      f"{e_ours:.2f}", f"{e_naive:.2f}", f"{e_ours / e_naive:.2f}x")
        table.add_row("SmolLM2-135M: peak memory of the two rows above, MiB", f"{smol['peak_mib']:,.0f}", "-", "-")
    if SHARED.is_dir():
        for name, seconds in bench_real(args.bench_items).items():
            results[f"eval_seconds_{name.lower().replace(' ', '_').replace('-', '_')}"] = entry(seconds, None, "s")
            table.add_row(f"{name} eval, seconds ({args.bench_items} items per set, fresh tiny model)",
                          f"{seconds:.1f}", "-", "-")
    else:
        table.add_row(f"real-benchmark evals: skipped, {SHARED} is absent", "-", "-", "-")
    console = Console()
    console.print(table)
    console.print(f"fixed cost split (seconds after the command started, medians): {split}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
