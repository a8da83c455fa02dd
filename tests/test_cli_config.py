"""The CLI and the config tree: composition of every option, --cfg job, and one-line errors."""

import re
import time
from pathlib import Path

import pytest

from tests.conftest import run_tru
from tru_cli.config import (
    COMMAND_CONFIGS,
    conf_dir,
    expand_sweeps,
    group_options,
    searchpath_override,
)

GROUPS = ["model", "benchmark", "method", "generator", "judge", "trainer", "device", "logger", "attack"]
# hydra/launcher: tru's own option and the ones Hydra's plugins bring (basic, submitit)
LAUNCHERS = {"local": "BasicLauncher", "basic": "BasicLauncher", "submitit_local": "LocalLauncher",
             "submitit_slurm": "SlurmLauncher"}


def _options(group):
    return group_options(group)


@pytest.mark.parametrize("command", sorted(COMMAND_CONFIGS))
def test_every_command_composes_with_defaults(config, command):
    cfg = config(command)
    assert cfg.command == command
    assert cfg.model.name == "tiny" and cfg.benchmark.name == "synthetic" and cfg.method.name == "tru"
    assert cfg.method.alpha == 0.1 and cfg.method.lambda_retain == 1.0


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes_and_resolves(config, group):
    from omegaconf import OmegaConf

    assert _options(group), f"conf/{group} is empty"
    command = "attack" if group == "attack" else "unlearn"
    for option in _options(group):
        cfg = config(command, f"{group}={option}")
        OmegaConf.to_container(cfg, resolve=True)


def hydra_config(conf: Path, command: str, *overrides: str):
    """The composed config with Hydra's own section (launcher, sweeper), as `tru` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(conf), job_name=command):
        return hydra_compose(COMMAND_CONFIGS[command], overrides=[*overrides, *searchpath_override()],
                             return_hydra_config=True)


def test_every_hydra_launcher_composes():
    assert set(group_options("hydra/launcher")) <= set(LAUNCHERS)
    for option, target in LAUNCHERS.items():
        cfg = hydra_config(conf_dir(), "pipeline", f"hydra/launcher={option}")
        assert cfg.hydra.launcher._target_.endswith(target), option


def test_required_options_exist():
    assert {"tiny", "llama3-8b", "llama3.2-1b", "llama2-7b-chat", "zephyr-7b-beta"} <= set(_options("model"))
    assert {"tofu", "synthetic"} <= set(_options("benchmark"))
    assert {"tru", "graddiff"} <= set(_options("method"))
    assert {"wandb", "none"} <= set(_options("logger")) and {"cpu", "cuda"} <= set(_options("device"))
    assert (conf_dir() / "hydra" / "launcher").is_dir()


@pytest.mark.parametrize("forget,retain", [("forget01", "retain99"), ("forget05", "retain95"),
                                           ("forget10", "retain90")])
def test_forget_split_picks_the_matching_retain_split(config, forget, retain):
    cfg = config("unlearn", "benchmark=tofu", f"benchmark.forget_split={forget}")
    assert cfg.benchmark.retain_split == retain and cfg.benchmark.hub_id == "locuslab/TOFU"


def test_sweep_expansion_matches_hydra_order():
    points = expand_sweeps(["method.alpha=0.05,0.2", "seed=range(0,2)", "x='a,b'"])
    assert points == [["method.alpha=0.05", "seed=0", "x='a,b'"], ["method.alpha=0.05", "seed=1", "x='a,b'"],
                      ["method.alpha=0.2", "seed=0", "x='a,b'"], ["method.alpha=0.2", "seed=1", "x='a,b'"]]


def test_cfg_job_prints_the_llama3_tofu_config_fast_and_offline(tmp_path):
    start = time.perf_counter()
    proc = run_tru(["unlearn", "model=llama3-8b", "benchmark=tofu", "--cfg", "job"], tmp_path)
    assert time.perf_counter() - start < 30
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in proc.stdout and "locuslab/TOFU" in proc.stdout
    assert "alpha: 0.1" in proc.stdout
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_version_and_help(tmp_path):
    assert run_tru(["--version"], tmp_path).stdout.strip().startswith("tru ")
    help_text = run_tru(["unlearn", "--help"], tmp_path).stdout
    assert "Examples" in help_text and "method.alpha" in help_text
    for command in ("finetune", "generate-targets", "eval", "pipeline", "attack", "report"):
        text = run_tru([command, "--help"], tmp_path).stdout
        assert "Examples" in text and f"tru {command}" in text, command


def _one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_group_option_lists_valid_choices(tmp_path):
    proc = run_tru(["unlearn", "model=llama9"], tmp_path, check=False)
    _one_line_error(proc, "model=llama9", "tiny", "llama3-8b")
    assert proc.returncode == 2


def test_unknown_key_names_the_key_and_valid_keys(tmp_path):
    proc = run_tru(["unlearn", "method.alhpa=0.2"], tmp_path, check=False)
    _one_line_error(proc, "method.alhpa", "alpha", "lambda_retain")


def test_unknown_option_inside_a_sweep_fails_before_any_job(tmp_path):
    proc = run_tru(["pipeline", "-m", "method=tru,nosuch"], tmp_path, check=False)
    _one_line_error(proc, "method=nosuch")
    assert not (tmp_path / "runs").exists()


def test_bad_forget_split_value(tmp_path):
    proc = run_tru(["unlearn", "benchmark=tofu", "benchmark.forget_split=forget07"], tmp_path, check=False)
    _one_line_error(proc, "forget07", "forget01, forget05 or forget10")


def test_missing_data_file_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc = run_tru(["generate-targets", "benchmark=tofu", f"benchmark.data_dir={data}", "logger=none"],
                   tmp_path, check=False)
    _one_line_error(proc, "forget10", str(data))
    assert proc.returncode == 1


def test_malformed_jsonl_line_is_named_before_the_run_starts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "forget10.jsonl").write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer"\n')
    proc = run_tru(["generate-targets", "benchmark=tofu", f"benchmark.data_dir={data}", "logger=none",
                    f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    _one_line_error(proc, "forget10.jsonl line 2", "malformed JSON")
    assert proc.returncode == 2 and not (tmp_path / "run").exists()  # refused before the run began


def test_every_experiment_overlay_composes(config):
    from tru_cli.config import experiments_root

    overlays = sorted(p.stem for p in (experiments_root() / "experiments").glob("*.yaml"))
    assert "smoke" in overlays
    for name in overlays:
        cfg = config("pipeline", f"experiments={name}")
        assert cfg.command == "pipeline"
    assert config("pipeline", "experiments=smoke").benchmark.synthetic.num_authors == 5


def test_slurm_overlay_takes_cluster_settings_from_the_ignored_local_file(config, tmp_path):
    """The cluster's own file (conf/local/slurm.yaml, git-ignored) overrides the overlay; the test
    writes it into a copy of the config tree, never into conf/."""
    import shutil

    assert config("pipeline", "experiments=slurm").device.accelerator == "cuda"
    conf = shutil.copytree(conf_dir(), tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    (conf / "local" / "slurm.yaml").write_text(
        "# @package _global_\nhydra: {launcher: {partition: lab-gpu, setup: [module load cuda]}}\n")
    launcher = hydra_config(conf, "pipeline", "experiments=slurm").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "lab-gpu"
    assert list(launcher.setup) == ["module load cuda"] and launcher.array_parallelism == 8
    (conf / "local" / "slurm.yaml").unlink()  # without the cluster's file: the overlay's own values
    assert hydra_config(conf, "pipeline", "experiments=slurm").hydra.launcher.partition != "lab-gpu"


def test_rmu_takes_its_coefficients_from_the_backbone_config(config):
    """WMDP's published Zephyr run (c 6.5, retain weight 1200, layer 7, layers 5-7 down_proj) and
    OpenUnlearning's Llama settings come from the model configs; an explicit value still wins."""
    zephyr = config("unlearn", "model=zephyr-7b-beta", "method=rmu").method
    assert (zephyr.layer, zephyr.steering_coeff, zephyr.lambda_retain) == (7, 6.5, 1200)
    assert re.search(zephyr.trainable, "model.layers.6.mlp.down_proj.weight")
    assert not re.search(zephyr.trainable, "model.layers.8.mlp.down_proj.weight")
    llama = config("unlearn", "model=llama3-8b", "method=rmu").method
    assert (llama.layer, llama.steering_coeff, llama.lambda_retain) == (7, 300.0, 1000)
    tiny = config("unlearn", "method=rmu").method  # no published setting: small defaults, all weights
    assert (tiny.layer, tiny.steering_coeff, tiny.lambda_retain, tiny.trainable) == (2, 2.0, 1.0, None)
    assert config("unlearn", "model=zephyr-7b-beta", "method=rmu", "method.steering_coeff=20").method.steering_coeff == 20


def test_openunlearning_trainer_has_their_tofu_settings(config):
    from tru_cli.methods.trainer import training_args

    cfg = config("unlearn", "model=llama2-7b-chat", "benchmark=tofu", "trainer=openunlearning")
    args = training_args(cfg, cfg.trainer.unlearn, "/tmp/unused")
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 32
    assert (args.weight_decay, str(args.lr_scheduler_type.value), args.learning_rate, args.num_train_epochs) == \
        (0.01, "linear", 1e-5, 10.0)
    default = config("unlearn", "model=llama2-7b-chat", "benchmark=tofu").trainer.unlearn
    assert (default.batch_size, default.weight_decay, default.lr_scheduler) == (8, 0.0, "constant_with_warmup")


def test_training_length_is_set_per_model_and_method(config):
    # a published backbone gives TRU (and its ablations) 2048 tokens for its reasoning targets, QA baselines 512
    for model in ("smollm2-135m", "llama3-8b", "zephyr-7b-beta", "phi-1.5"):
        assert config("unlearn", f"model={model}", "method=tru").model.max_length == 2048
        assert config("unlearn", f"model={model}", "method=tru_no_reasoning").model.max_length == 2048
        assert config("unlearn", f"model={model}", "method=graddiff").model.max_length == 512
    # the embedded model's positions end at 512, whatever the method
    tiny = config("unlearn", "method=tru").model
    assert tiny.max_length == tiny.context_length == 512


def test_training_length_beyond_the_model_context_is_one_line(tmp_path):
    proc = run_tru(["unlearn", "model=phi-1.5", "model.max_length=4096"], tmp_path, check=False)
    _one_line_error(proc, "model.max_length=4096", "model.context_length=2048", "model.max_length=2048")


def test_bitsandbytes_is_held_out_of_runs_that_do_not_use_it(config):
    """peft imports bitsandbytes whenever it is installed (at `import peft` before 0.22, when it wraps a
    model in LoRA from 0.22.0 on: 1.5 s of imports and a hub warning per process); tru holds it out
    except for the quantize attack's bnb method (alone or in a suite) and the 8-bit optimizers, and
    peft then finds it absent."""
    import importlib.util
    import subprocess
    import sys

    from tru_cli import optional_packages

    uses = optional_packages.uses_bitsandbytes
    assert not uses(config("unlearn")) and not uses(config("attack", "attack=quantize"))
    assert not uses(config("attack", "attack=suite"))  # the suite's quantize runs RTN by default
    assert uses(config("attack", "attack=quantize", "attack.method=bnb"))
    assert uses(config("attack", "attack=suite", "attack.settings.quantize.method=bnb"))
    assert uses(config("unlearn", "trainer.optim=adamw_bnb_8bit"))
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed (the quantize extra): nothing to hold out")
    probe = ("import importlib.util, sys\n"
             "from tru_cli import optional_packages\nfrom tru_cli.config import compose\n"
             "held = optional_packages.hold_out_unused([compose('{command}', {overrides})])\n"
             "import peft\nfrom transformers import LlamaConfig, LlamaForCausalLM\n"
             "shape = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,"
             " num_key_value_heads=2, vocab_size=64)\n"
             "peft.get_peft_model(LlamaForCausalLM(LlamaConfig(**shape)), peft.LoraConfig(r=2, target_modules=['q_proj']))\n"
             "print(held, importlib.util.find_spec('bitsandbytes') is not None, "
             "sys.modules.get('bitsandbytes') is not None)")
    for command, overrides, printed in (("unlearn", [], "['bitsandbytes'] False False"),
                                        ("attack", ["attack=quantize", "attack.method=bnb"], "[] True True")):
        out = subprocess.run([sys.executable, "-c", probe.format(command=command, overrides=overrides)],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == printed


def test_transformers_imports_without_datasets_and_scipy_which_stay_importable():
    """transformers' Trainer and modeling code import datasets and scipy only for inputs and models
    tru never gives them; tru's own deferred imports of both still work afterwards."""
    import subprocess
    import sys

    probe = ("import sys; from tru_cli.optional_packages import import_transformers; "
             "import_transformers('transformers.modeling_utils', 'transformers.trainer'); "
             "from transformers import Trainer, LlamaForCausalLM; from transformers.utils import is_datasets_available; "
             "print(sorted(p for p in ('datasets', 'scipy', 'pandas') if p in sys.modules), is_datasets_available()); "
             "import datasets, scipy.stats; print(datasets.Dataset.from_dict({'a': [1]}).num_rows, "
             "scipy.stats.ks_2samp([1, 2, 3], [1, 2, 3]).pvalue)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[] False", "1 1.0"]


def test_the_command_holds_the_collector_off_through_startup_and_freezes_what_it_imported(tmp_path):
    """`tru` (its own process) starts up with the garbage collector off, resumes it with start-up's
    objects frozen once the run's inputs are ready, and freezes again before exit; an in-process
    caller's collector is never touched."""
    import subprocess
    import sys

    probe = ("import gc, sys; from tru_cli import cli, collector, runner; seen = []\n"
             "def fake_run_hydra(command, args):\n"
             "    seen.append(gc.isenabled()); collector.resume_after_startup()\n"
             "    seen.extend([gc.isenabled(), gc.get_freeze_count() > 0]); gc.unfreeze(); return 0\n"
             "runner.run_hydra = fake_run_hydra\n"
             "from typer.testing import CliRunner\n"
             "CliRunner().invoke(cli.app, ['eval', 'logger=none']); print(seen)\n"
             "sys.argv = ['tru', 'eval', 'logger=none']\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "print(seen, gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    in_process, own_process = out.stdout.strip().splitlines()
    assert in_process == "[True, True, False]"  # never paused, so resuming freezes nothing
    assert own_process == "[True, True, False, False, True, True] True"


def test_a_prefetched_import_lands_in_the_background_and_a_missing_one_stays_silent(tmp_path):
    """tru_cli.prefetch imports rouge_score (what evaluations score with after generating) on a
    thread, with the collector back on afterwards; a module that cannot be imported raises nothing on
    the thread (the caller's own import reports it), and nothing was imported before."""
    import subprocess
    import sys

    probe = ("import gc, sys; from tru_cli import prefetch; before = 'rouge_score.rouge_scorer' in sys.modules\n"
             "prefetch.in_background('rouge_score.rouge_scorer').join()\n"
             "prefetch.in_background('tru_no_such_module').join()\n"
             "print(before, 'rouge_score.rouge_scorer' in sys.modules, 'nltk' in sys.modules, gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True", "True"]
    assert "Exception in thread" not in out.stderr and "tru_no_such_module" not in out.stderr
