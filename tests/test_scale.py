"""Scale: several processes (ddp_sim) training like one, LoRA unlearning, the memory plan, and the
multi-GPU device configs."""

import pytest

from tests.conftest import SMALL, results, run_tru
from tru_cli import threads


@pytest.mark.slow
def test_ddp_sim_two_processes_train_like_one(tmp_path):
    import json

    runs = {}
    for device in ("cpu", "ddp_sim"):
        run_dir = tmp_path / device
        run_tru(["unlearn", f"device={device}", *SMALL, "trainer.logging_steps=1", "trainer.unlearn.epochs=2",
                 "trainer.unlearn.batch_size=4", "unlearn.evaluate=true", f"hydra.run.dir={run_dir}"], tmp_path)
        runs[device] = [json.loads(x)["loss"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    single, multi = runs["cpu"], runs["ddp_sim"]
    assert len(single) == len(multi) == 10  # same effective batch: 20 items / 4 per step, 2 epochs
    for a, b in zip(single, multi, strict=True):
        assert abs(a - b) <= 1e-3 * abs(a), (single, multi)
    res = results(tmp_path / "ddp_sim")
    assert res["device"]["num_processes"] == 2 and res["metrics"]["unlearn/processes"] == 2
    # the two ranks share the cores (device.num_threads = cores / 2) instead of each taking all of them
    assert res["device"]["torch_threads"] == max(1, threads.cores() // 2)
    assert results(tmp_path / "cpu")["device"]["torch_threads"] == threads.cores()
    # the fixed cost can be read off: process start, then the first and the last training step
    timing = results(tmp_path / "cpu")["timing"]
    assert timing["process_started"] < timing["config_composed"] < timing["first_step"] < timing["last_step"]
    assert (tmp_path / "ddp_sim" / "model" / "config.json").is_file()
    # the evaluation after training ran once (rank 0) and gives what the single process gives
    assert res["metrics"]["tofu/forget_rougeL_recall"] == pytest.approx(
        results(tmp_path / "cpu")["metrics"]["tofu/forget_rougeL_recall"], abs=0.02)


def test_memory_plan_llama3_8b_on_one_80gb_gpu(config):
    from tru_cli.methods import memory, objectives

    def plan(*extra):
        cfg = config("unlearn", "model=llama3-8b", "benchmark=tofu", "device=cuda", *extra)
        return cfg, memory.plan(cfg, len(objectives.needed_parts(cfg.method)), objectives.needs_reference_model(cfg.method))

    cfg, full = plan()
    assert not full.fits and full.total > 100
    assert full.parts["optimizer states (AdamW, 2 per trainable weight)"] == pytest.approx(2 * 8.03e9 * 2 / 1024**3)
    assert "trainer=lora" in memory.describe(cfg, full)
    assert cfg.model.max_length == 2048  # TRU's reasoning targets get 2048-token sequences on a real backbone
    lora_cfg, lora = plan("trainer=lora")
    assert not lora.fits and lora.parts["gradients"] < 1
    assert "per_device_batch_size" in memory.describe(lora_cfg, lora)
    _, half = plan("trainer=lora", "trainer.unlearn.per_device_batch_size=4")  # accumulation keeps the batch
    assert half.fits and half.total < 0.6 * lora.total
    # a baseline trains on 512-token QA sequences: LoRA fits at the full per-device batch
    _, graddiff = plan("trainer=lora", "method=graddiff")
    assert graddiff.fits and graddiff.total < 40
    # ZeRO-3 over 8 GPUs shards weights, gradients and optimizer states
    _, sharded = plan("device=deepspeed")
    assert sharded.parts["weights"] == pytest.approx(full.parts["weights"] / 8)


def test_multi_gpu_device_configs_compose(config):
    from tru_cli.errors import TruError
    from tru_cli.methods.trainer import batch_split, training_args

    cfg = config("unlearn", "model=llama3-8b", "benchmark=tofu", "device=fsdp")
    # the wrap unit is the model's own decoder layer (accelerate reads _no_split_modules), whatever the backbone
    assert cfg.device.strategy == "fsdp" and "transformer_layer_cls_to_wrap" not in cfg.device.fsdp_config
    cfg = config("unlearn", "model=llama3-8b", "benchmark=tofu", "device=deepspeed")
    assert cfg.device.deepspeed.zero_optimization.stage == 3
    cfg = config("unlearn", "device=ddp_sim", "device.num_processes=2")
    # in one process (a sweep job, the launching process) the effective batch is the config's
    args = training_args(cfg, cfg.trainer.unlearn, "/tmp/unused")
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == cfg.trainer.unlearn.batch_size
    per_device, accumulation = batch_split(cfg.trainer.unlearn, 2)  # what each rank of 2 uses
    assert (per_device, accumulation) == (4, 1)
    assert batch_split(cfg.trainer.finetune, 4) == (4, 1)
    with pytest.raises(TruError, match="cannot be split evenly over 3 processes"):
        batch_split(cfg.trainer.unlearn, 3)


def test_gradient_checkpointing_reaches_the_trainer_under_either_argument_name(config):
    """transformers renamed TrainingArguments.gradient_checkpointing to activation_checkpointing
    within 5.x (5.17 on a lent H200 had only the old name): the setting arrives under the name the
    installed release has, on and off."""
    import dataclasses

    from transformers import TrainingArguments

    from tru_cli.methods import trainer

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert trainer.CHECKPOINTING in names
    for flag in (True, False):
        cfg = config("unlearn", "trainer=lora", f"trainer.gradient_checkpointing={flag}")
        assert getattr(trainer.training_args(cfg, cfg.trainer.unlearn, "/tmp/unused"), trainer.CHECKPOINTING) is flag


@pytest.mark.slow
def test_lora_unlearning_trains_adapters_and_moves_the_forget_set(tmp_path):
    run_tru(["pipeline", *SMALL, "trainer=lora", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    m = results(tmp_path / "run")["metrics"]
    assert m["unlearn/lora"] == 1 and m["unlearn/trained_parameters"] < 0.5 * 1.4e6
    assert m["unlearned/tofu/forget_rougeL_recall"] < m["target/tofu/forget_rougeL_recall"]


def test_gpu_benchmark_script_runs_its_cpu_check(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT, tru_env

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--shapes", "tiny",
                           "--steps", "2", "--batch", "1", "--seq", "32"], cwd=tmp_path, env=tru_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("tiny ")]
    assert len(rows) == 2 and "error" not in proc.stdout  # full and LoRA both stepped
    # padding-free packing composes with checkpointing on and off and steps on a CPU too
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--shapes", "tiny",
                           "--steps", "2", "--batch", "2", "--seq", "32", "--modes", "full", "--packing", "both",
                           "--checkpointing", "both"], cwd=tmp_path, env=tru_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("tiny ")]
    assert len(rows) == 4 and "error" not in proc.stdout
    assert {(r[2], r[4]) for r in rows} == {("on", "on"), ("on", "off"), ("off", "on"), ("off", "off")}
    # fused cross-entropy needs Liger's CUDA kernels: one line, before any model is built
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--shapes", "tiny",
                           "--fused-ce", "on"], cwd=tmp_path, env=tru_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--fused-ce" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_lora_reference_is_the_base_with_adapters_off(tmp_path):
    run_tru(["unlearn", *SMALL, "trainer=lora", "method=kl", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    m = results(tmp_path / "run")["metrics"]
    assert m["unlearn/lora"] == 1 and m["unlearn/reference_model_held"] == 0  # no second copy
    assert m["unlearn/retain_kl_first"] == pytest.approx(0.0, abs=1e-6)  # adapters start at zero: no drift yet


def test_lora_refuses_target_modules_the_model_lacks():
    from omegaconf import OmegaConf
    from transformers import LlamaConfig, LlamaForCausalLM

    from tru_cli.errors import TruError
    from tru_cli.methods import lora

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, vocab_size=50))
    spec = OmegaConf.create({"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "fc1"], "merge": True})
    with pytest.raises(TruError, match="trainer.lora.target_modules has fc1.*q_proj"):
        lora.apply(model, spec)


def test_plan_only_does_not_launch_or_build_anything(tmp_path):
    run_tru(["unlearn", *SMALL, "device=ddp_sim", "unlearn.plan_only=true", f"hydra.run.dir={tmp_path / 'run'}"],
            tmp_path)
    assert results(tmp_path / "run")["metrics"]["plan/fits"] == 1
    assert not (tmp_path / ".tru_store").exists()  # no finetune, no targets


def test_a_step_too_big_for_this_machine_stops_naming_the_batch_that_fits(config, monkeypatch):
    """SmolLM2 TRU on ~850-token MUSE chunks at 8 items per forward was killed on this 24 GiB machine
    (2 per forward peaked at 12.3 GB): the check stops it first and names a per-device batch that fits."""
    from tru_cli.errors import TruError
    from tru_cli.methods import memory

    free = {"MemTotal": 23.4, "MemAvailable": 23.0}
    monkeypatch.setattr(memory, "meminfo_gib", lambda field="MemAvailable": free[field])
    monkeypatch.setattr(memory, "held_gib", lambda: 1.5)  # the interpreter, torch and SmolLM2 loaded
    cfg = config("unlearn", "model=smollm2-135m", "method=tru", "benchmark=muse_news")
    with pytest.raises(TruError, match=r"per_device_batch_size=2 .*accumulation keeps the batch of 8"):
        memory.check_host(cfg, 850, 3, False)
    # what fits the machine but not what other processes leave free right now is a warning, not a stop
    free["MemAvailable"] = 2.5
    memory.check_host(cfg, 192, 3, False)
    memory.check_host(cfg, 120, 3, False)  # TOFU-length sequences fit at 8
    memory.check_host(config("unlearn", "model=smollm2-135m", "method=tru", "trainer.unlearn.per_device_batch_size=2"),
                      850, 3, False)
    memory.check_host(config("unlearn", "model=smollm2-135m", "device.memory_check=false"), 850, 3, False)
