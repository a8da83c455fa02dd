"""Where this process stands in a multi-process run (device.strategy ddp / fsdp / deepspeed with
num_processes > 1), and whether a command should fan out. The launching itself is in runner.py:
tru builds what the ranks share first, then relaunches itself under torch.distributed.run. Each rank
trains its share of every batch (transformers.Trainer through accelerate); rank 0 alone writes
results.json, wandb and the model."""

from __future__ import annotations

import os

from omegaconf import DictConfig

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

