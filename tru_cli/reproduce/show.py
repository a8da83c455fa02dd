"""The plan as a table and totals on the terminal."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from tru_cli.reproduce.plan import JobPlan


def plan_table(target: str, scale: str, plans: list[tuple[JobPlan, DictConfig]], totals: dict,
               settings: DictConfig) -> None:
    device = f"{settings.gpu_memory_gb} GB GPU" if settings.gpu_memory_gb else "this machine's memory"
    table = Table(title=f"make {target} SCALE={scale}: plan ({len(plans)} jobs, memory per job against {device})")
    for col in ("job", "command", "model", "method", "memory GiB", "fits", "per-device batch", "train tokens",
                "device h", "judge requests"):
        table.add_column(col, justify="left" if col in ("job", "command", "model", "method") else "right")
    for p, cfg in plans:
        table.add_row(p.job.name, p.job.command, str(cfg.model.name), "-" if p.job.command == "eval" else str(cfg.method.name),
                      "-" if p.memory_gib is None else f"{p.memory_gib:.1f}", "yes" if p.fits else "NO",
                      "-" if p.per_device is None else str(p.per_device), f"{p.train_tokens:,.0f}", f"{p.hours:.2f}",
                      str(p.judge_requests))
    console = Console(width=160)
    console.print(table)
    console.print(
        f"generator: {totals['generator_requests']:,} requests, ~{totals['generator_tokens'] / 1e6:.2f} M tokens; "
        f"judge: {totals['judge_requests']:,} requests, ~{totals['judge_tokens'] / 1e6:.2f} M tokens; "
        f"estimated cost ${totals['cost_usd']:,.2f} at ${settings.price_per_mtok.input}/"
        f"${settings.price_per_mtok.output} per M input/output tokens; "
        f"~{totals['device_hours']:.1f} device hours "
        f"({'every job fits' if totals['fit'] else 'some job does NOT fit: see its row'}). "
        f"Estimates: forget items, sequence and request tokens, throughput from "
        f"experiments/paper/scale/{scale}.yaml. Nothing was started.")
