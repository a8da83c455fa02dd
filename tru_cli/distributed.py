"""Several processes for one command (device.strategy ddp / fsdp / deepspeed with num_processes > 1):
tru builds what the ranks share first, in this one process (the finetuned target model and the
targets, through the store), then relaunches itself under torch.distributed.run with those paths and
one run dir, so no two ranks ever build the same thing. Each rank trains its share of every batch
(transformers.Trainer through accelerate); rank 0 alone writes results.json, wandb and the model."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger("tru")
COMMANDS = ("unlearn",)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def wanted(command: str, cfg: DictConfig) -> bool:
    """Whether this invocation should fan out (it is not already a rank of a launched group)."""
    if cfg.get(command.replace("-", "_"), {}).get("plan_only"):
        return False  # the plan reads num_processes from the config; nothing to launch
    return (command in COMMANDS and int(cfg.device.get("num_processes") or 1) > 1
            and (cfg.device.get("strategy") or "single") != "single" and "LOCAL_RANK" not in os.environ)


def launch(command: str, args: list[str], cfg: DictConfig) -> int:
    """Build the shared inputs, then run `tru <command>` on every rank; returns the exit code."""
    from tru_cli.stages import artifacts

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    extra = [f"model.path={artifacts.target_model(cfg)}"]
    if cfg.method.use_targets and not cfg.unlearn.targets:
        extra.append(f"unlearn.targets={artifacts.targets(cfg)}")
    if not any(a.startswith("hydra.run.dir=") for a in args):
        stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        extra.append(f"hydra.run.dir={Path(cfg.paths.runs) / command / stamp}")
    n = int(cfg.device.num_processes)
    env = dict(os.environ)
    if cfg.device.get("threads"):
        env["OMP_NUM_THREADS"] = str(cfg.device.threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "tru_cli", command, *args, *extra]
    log.info("launching %d processes (device=%s): %s", n, cfg.device.name, " ".join(cmd[3:]))
    return subprocess.run(cmd, env=env).returncode
