"""Hands a command to Hydra (`@hydra.main` semantics: run dirs, sweeps, launchers) and runs it, in
this process or, for a multi-process device, on every rank under torch.distributed.run.

Each job is wrapped so that it always leaves a results.json: `completed`, or `failed` with the
error. A user error prints one line; in a sweep, a failed job is recorded and the others go on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from tru_cli import collector, distributed, optional_packages, redact, threads, timing
from tru_cli.config import COMMAND_CONFIGS, conf_dir, fresh_dir, searchpath_override, split_flags
from tru_cli.errors import TruError
from tru_cli.tracking import RunRecorder

log = logging.getLogger("tru")
_SWEEP_FAILED: list[int] = []  # set by SweepStatus at the end of a multirun


class SweepStatus(Callback):
    """A Hydra callback, run in the launching process: after a sweep, count the jobs whose
    results.json says failed (or that left none), whichever launcher ran them (local, submitit)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        self.started = time.time() - 1  # job folders older than this sweep (a reused sweep dir) are not its own
        target = str(config.hydra.launcher.get("_target_", ""))
        if "submitit" in target and target.endswith(".LocalLauncher"):
            # the jobs run at once on this machine: each takes its share of the cores (threads.py)
            jobs = sweep_size(config)
            if jobs:
                os.environ[threads.LOCAL_JOBS_ENV] = str(threads.local_jobs() * jobs)
                log.info("%d sweep jobs at once on this machine: %d torch threads each", jobs,
                         threads.count(config.device))

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()
                and p.stat().st_mtime >= getattr(self, "started", 0)] if sweep.is_dir() else []
        failed = 0
        for job in jobs:
            res = job / "results.json"
            status = json.loads(res.read_text()).get("status") if res.is_file() else None
            failed += status != "completed"
        _SWEEP_FAILED.append(failed)
        if failed:
            log.error("%d of %d sweep jobs failed; see results.json in %s", failed, len(jobs), sweep)


def sweep_size(config) -> int | None:
    """Jobs in the sweep (command-line and `hydra.sweeper.params` sweeps, at most the sweeper's
    batch), or None where a value cannot be listed (a sweeper that samples, such as optuna's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    try:
        overrides = OverridesParser.create().parse_overrides(
            [*config.hydra.overrides.task, *(f"{key}={value}" for key, value in params.items())])
        size = 1
        for override in overrides:
            if override.is_sweep_override():
                size *= len(list(override.sweep_string_iterator()))
    except Exception:  # noqa: BLE001 - unknown sweep syntax: leave the threads as they are
        return None
    batch = config.hydra.sweeper.get("max_batch_size")
    return min(size, int(batch)) if batch else size


def _stage(command: str):
    from tru_cli import stages  # deferred: the stages import torch and transformers (seconds)

    return stages.stage(command)


TRAINING_COMMANDS = ("finetune", "unlearn", "pipeline", "attack")  # attack: the relearn attack trains


def _reads_models(command: str, cfg: DictConfig) -> bool:
    """False where a command reads no model: re-aggregating saved logs, a memory plan."""
    return not ((command == "eval" and cfg.eval.get("from_logs")) or (cfg.get("unlearn") or {}).get("plan_only"))


def _import_model_libraries(command: str) -> None:
    """transformers' modeling code (and its Trainer, for a command that trains), imported before
    anything of tru's does, so that they import without the packages transformers would use only
    for inputs and models tru never gives it (optional_packages.import_transformers)."""
    trainer = ("transformers.trainer",) if command in TRAINING_COMMANDS else ()
    optional_packages.import_transformers("transformers.modeling_utils", *trainer)


def _prepare(command: str, cfg: DictConfig, recorder) -> None:
    """Inputs every stage of a command shares, set into `cfg` before it runs (artifacts.prepare)."""
    from tru_cli import artifacts  # deferred: artifacts import torch and transformers (seconds)

    for name, path in artifacts.prepare(cfg).items():
        recorder.add_artifact(name, path)
        recorder.add_metrics(artifacts.producer_metrics(path))  # e.g. probe/known, probe/items


def _quiet_libraries() -> None:
    """Progress bars and chatter of libraries would bury tru's own one-line messages."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("absl").setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging  # deferred: transformers is slow to import

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _select_devices(cfg) -> None:
    """device.device_ids -> CUDA_VISIBLE_DEVICES, before anything initialises CUDA."""
    ids = cfg.device.get("device_ids")
    if cfg.device.accelerator == "cuda" and ids and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)


def run_hydra(command: str, args: list[str]) -> int:
    """Run `tru <command> args...` through Hydra; return how many jobs failed."""
    failures: list[str] = []
    _quiet_libraries()

    @hydra.main(version_base="1.3", config_path=str(conf_dir()),
                config_name=COMMAND_CONFIGS[command])
    def _task(cfg) -> None:
        run_dir = HydraConfig.get().runtime.output_dir
        if not distributed.is_main():  # one voice per multi-process run: rank 0's
            logging.getLogger("tru").setLevel(logging.WARNING)
        _select_devices(cfg)
        threads.apply(cfg.device)
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        timing.mark("config_composed")
        try:
            with RunRecorder(command, cfg, run_dir) as recorder:
                timing.mark("recorder_started")
                reads_models = _reads_models(command, cfg)
                if reads_models:
                    _import_model_libraries(command)
                stage = _stage(command)
                collector.resume_after_startup()  # start-up's imports are done; the work makes garbage
                recorder.start_tracking()
                if reads_models:
                    _prepare(command, cfg, recorder)
                timing.mark("inputs_ready")
                stage(cfg, recorder)
        except TruError as exc:
            failures.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            if not multirun:
                raise SystemExit(1) from None
        except Exception as exc:  # recorded as failed; a sweep goes on with its next job
            failures.append(repr(exc))
            if multirun:
                log.exception("job failed: %s", exc)
                return
            # one line for the user; the traceback, for a bug report, beside the run's results.json
            trace = Path(run_dir) / "traceback.txt"
            trace.write_text(redact.scrub(traceback.format_exc()))
            first = redact.scrub(str(exc)).splitlines()[0][:300] if str(exc) else ""
            print(f"error: {type(exc).__name__}: {first} (unexpected; the traceback is in {trace})",
                  file=sys.stderr)
            raise SystemExit(1) from None

    saved_argv = sys.argv
    flags, overrides = split_flags(args)
    sys.argv = [f"tru-{command}", *flags, *searchpath_override(), f"hydra.job.name={command}",
                *overrides]
    _SWEEP_FAILED.clear()
    try:
        _task()
    finally:
        sys.argv = saved_argv
    return max(len(failures), *_SWEEP_FAILED) if _SWEEP_FAILED else len(failures)


def launch(command: str, args: list[str], cfg: DictConfig) -> int:
    """Several processes for one command: build the inputs every rank shares (the target model and
    the targets, through the store) in this one process, then run `tru <command>` on every rank
    under torch.distributed.run with those paths and one run dir, so no two ranks ever build the
    same thing; returns the exit code."""
    from tru_cli import artifacts  # deferred: artifacts import torch and transformers (seconds)

    collector.resume_after_startup()  # preparing may train the target model here
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    extra = [f"benchmark.known={path}" for path in artifacts.prepare(cfg).values()]
    extra.append(f"model.path={artifacts.target_model(cfg)}")
    if cfg.method.use_targets and not cfg.unlearn.targets:
        extra.append(f"unlearn.targets={artifacts.targets(cfg)}")
    if not any(a.startswith("hydra.run.dir=") for a in args):
        stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        extra.append(f"hydra.run.dir={fresh_dir(str(Path(cfg.paths.runs) / command / stamp))}")
    n = int(cfg.device.num_processes)
    env = dict(os.environ)
    env.setdefault("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT")  # device=fsdp: rank 0 saves whole weights
    # the ranks share this machine's cores (device.num_threads, else the cores / the ranks)
    env[threads.LOCAL_JOBS_ENV] = str(threads.local_jobs() * n)
    env["OMP_NUM_THREADS"] = str(threads.count(cfg.device, threads.local_jobs() * n))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "tru_cli", command, *args, *extra]
    log.info("launching %d processes (device=%s): %s", n, cfg.device.name, " ".join(cmd[3:]))
    return subprocess.run(cmd, env=env).returncode
