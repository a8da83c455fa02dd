"""The `tru` command: one thin Typer command per pipeline stage.

Each command hands its trailing arguments to Hydra (overrides, `-m` sweeps, `--cfg job`,
`hydra.run.dir=...`), after checking them against the config tree so that a typo fails at once.
"""

from __future__ import annotations

import os
import sys

import typer

from tru_cli import __version__, collector
from tru_cli.errors import TruError

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
_OWN_PROCESS = False  # set by main(): this process is the tru command, and only its runs use its imports
app = typer.Typer(
    name="tru",
    help="Targeted reasoning unlearning (TRU) and its baselines: finetune, generate targets, "
    "unlearn, evaluate, attack. Every command takes Hydra overrides (key=value), -m for sweeps "
    "and --cfg job to print the composed config.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _launch(command: str, args: list[str]) -> None:
    # deferred here and below: config, runner and report import hydra and omegaconf (tenths of a
    # second) that --help and --version never need
    from tru_cli import optional_packages, preflight, runner
    from tru_cli.config import validate_overrides

    if _OWN_PROCESS:  # until the run's inputs are ready (runner); an in-process caller keeps its collector on
        collector.pause_for_startup()

    modes = [a for a in args if a in ("-m", "--multirun", "--cfg", "-c", "--info", "-i", "--run", "-r")]
    if len({m.lstrip("-")[0] for m in modes}) > 1:
        _fail(f"{' and '.join(modes)} cannot be combined; Hydra runs one of them at a time")
    hydra_help = any(a in ("--hydra-help", "--info", "-i") for a in args)
    if not hydra_help:
        try:
            configs = validate_overrides(command, args, lambda cfg: preflight.problems(command, cfg))
        except TruError as exc:
            _fail(str(exc))
        if _OWN_PROCESS:  # an in-process caller (a test's CliRunner, a notebook) keeps its imports as they are
            optional_packages.hold_out_unused(configs)
    if not hydra_help and not modes:
        _maybe_distributed(command, args, configs[0])
    failures = runner.run_hydra(command, args)
    if failures:
        raise typer.Exit(1)


def _maybe_distributed(command: str, args: list[str], cfg) -> None:
    """device=ddp|ddp_sim|fsdp|deepspeed with several processes (`cfg`, the run's composed config): fan
    out, then exit with their code."""
    from tru_cli import distributed, runner  # deferred: see _launch

    if command not in distributed.COMMANDS or "LOCAL_RANK" in os.environ:
        return
    try:
        if not distributed.wanted(command, cfg):
            return
        code = runner.launch(command, args, cfg)
    except TruError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _command(name: str, doc: str):
    def command(ctx: typer.Context) -> None:
        _launch(name, list(ctx.args))

    command.__doc__ = doc
    app.command(name, context_settings=PASS_THROUGH)(command)


_command("finetune", """Teach a model the benchmark (the target model on the full set, or the retain model).

[bold]Examples[/bold]

  tru finetune                                  # tiny model, embedded benchmark, full set

  tru finetune finetune.split=retain            # the retain model (benchmark.retain_split)

  tru finetune model=llama3.2-1b benchmark=tofu device=cuda

Hydra: -m/--multirun sweeps, --cfg job prints the config, hydra.run.dir=DIR sets the run dir.
""")
_command("generate-targets", """Write one reasoning trace and explained refusal per forget item (targets.jsonl).

[bold]Examples[/bold]

  tru generate-targets                          # offline template backend, embedded benchmark

  tru generate-targets benchmark.forget_split=forget05 generator.criteria=false
""")
_command("unlearn", """Unlearn the forget set: TRU (CE on reasoning targets + alpha * GradDiff) or a baseline.

[bold]Examples[/bold]

  tru unlearn                                   # TRU on the embedded default

  tru unlearn method=graddiff

  tru unlearn -m method.alpha=0.05,0.1,0.2      # a sweep (method.alpha, method.lambda_retain, ...)

  tru unlearn model=llama3-8b benchmark=tofu --cfg job
""")
_command("eval", """Evaluate a model on the benchmark (TOFU metrics, per-item logs), or re-aggregate saved logs.

[bold]Examples[/bold]

  tru eval model.path=runs/unlearn/.../model eval.retain_logs=DIR

  tru eval benchmark=tofu eval.from_logs=DIR eval.retain_logs=DIR   # no model needed
""")
_command("pipeline", """Run finetune -> eval retain -> generate-targets -> unlearn -> eval, reusing unchanged stages.

[bold]Examples[/bold]

  tru pipeline                                  # the whole loop on the embedded default

  tru pipeline -m method.alpha=0.05,0.2         # two jobs in one sweep dir, finetuned once
""")


@app.command("report")
def report(
    paths: list[str] = typer.Argument(..., help="Run or sweep directories (searched for results.json)."),
    metrics: str = typer.Option(None, "--metrics", help="Comma-separated metric names (default: the TOFU five)."),
    role: str = typer.Option("unlearned", "--role", help="Which model of a pipeline run: target, retain, unlearned; "
                             "several with commas (target,unlearned), a row each."),
    examples: int = typer.Option(0, "--examples", help="Also print the first N answers of each eval set per model."),
    out: str = typer.Option(None, "--out", help="Output folder (default: <first path>/report)."),
    log_wandb: bool = typer.Option(False, "--wandb", help="Also log table and plots to a new wandb run."),
) -> None:
    """Compare runs: a markdown and CSV table of metrics per run, and PNG plots.

    [bold]Examples[/bold]

      tru report runs/pipeline/multirun/2026-11-28_10-00-00

      tru report runs/a runs/b --metrics tofu/forget_quality,tofu/model_utility --role unlearned
    """
    from tru_cli import report as report_runs  # deferred: see _launch

    names = [m.strip() for m in metrics.split(",")] if metrics else None
    try:
        made = report_runs.report(paths, names, role, out)
    except TruError as exc:
        _fail(str(exc))
    typer.echo(made.table)
    if examples > 0:
        typer.echo(report_runs.examples(made.rows, examples))
    if log_wandb:
        report_runs.publish(made)
    typer.echo("wrote " + ", ".join(str(p) for p in made.files))


_command("attack", """Attack an unlearned model and report how much forgetting comes back (recovery).

[bold]Examples[/bold]

  tru attack                                    # every attack on the embedded default's TRU model

  tru attack attack=quantize attack.bits=4 model.path=UNLEARNED attack.reference_model=ORIGINAL

  tru attack attack=relearn attack.steps=[0,10,40]
""")


@app.command("reproduce", context_settings=PASS_THROUGH)
def reproduce(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="table1, table2, robustness, standard-metrics, alpha-sweep, option-shuffle."),
    scale: str = typer.Option(None, "--scale", help="paper or cpu (default: cpu without CUDA, paper with it)."),
    plan: bool = typer.Option(False, "--plan", help="Print the jobs, memory, requests, cost and hours; start nothing."),
    data: str = typer.Option(None, "--data", help="The benchmark slices' folder for SCALE=cpu (default ../shared/data)."),
    rows: str = typer.Option(None, "--rows", help="Only these rows (comma-separated, e.g. tru,graddiff)."),
    benchmarks: str = typer.Option(None, "--benchmarks", help="Only these benchmarks (comma-separated; default: "
                                   "all at paper scale, the scale file's run_benchmarks at CPU scale)."),
    out: str = typer.Option(None, "--out", help="Runs and table folder (default runs/paper/<target>/<scale>)."),
) -> None:
    """Reproduce one of the paper's tables or figures (make table1 [SCALE=paper|cpu] [PLAN=1]).

    Each job is one tru command in its own run folder, one after the other; a job that completed
    is reused, so the same command resumes a killed target. Then the table in the paper's layout.

    [bold]Examples[/bold]

      tru reproduce table1 --scale paper --plan     # jobs, GPU memory, API requests, cost, GPU hours

      tru reproduce table2 --scale cpu --rows tru,tru_no_ga

      tru reproduce table2 --scale cpu eval.max_items=4    # trailing overrides go to every job
    """
    import logging
    from pathlib import Path

    from tru_cli.reproduce import plan as planning  # deferred: see _launch
    from tru_cli.reproduce import run, show, spec, table

    # each job logs through its own tru run; this loop says which job runs, is reused or failed
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][tru][%(levelname)s] - %(message)s")
    try:
        scale = scale or _default_scale()
        paper_spec, settings = spec.load(target, scale, data)
        jobs = spec.select(spec.jobs(paper_spec, settings, list(ctx.args)), rows,
                           benchmarks or spec.run_benchmarks(settings, target))
        plans = [planning.plan_job(job, settings) for job in jobs]
        if plan:
            show.plan_table(target, scale, plans, planning.summarize(plans, settings), settings)
            return
        root = Path(out or f"runs/paper/{target}/{scale}")
        outcomes = [run.run_job(p.job, root / p.job.name, [f"trainer.unlearn.per_device_batch_size={p.per_device}"]
                                if p.per_device else []) for p, _ in plans]
        not_run = [b for b in paper_spec.benchmarks if b not in {j.benchmark for j in jobs}]
        aliases = spec.metric_aliases(settings)
        made = table.write(paper_spec, scale, table.cells(paper_spec, outcomes, spec.published(target), aliases),
                           root / "report", not_run, aliases)
    except TruError as exc:
        _fail(str(exc))
    typer.echo(made[0].read_text())
    typer.echo("wrote " + ", ".join(str(p) for p in made))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        _fail(f"{len(failed)} of {len(outcomes)} jobs failed ({failed[0].job.name}: {failed[0].error}); the same "
              f"command runs them again and reuses the {len(outcomes) - len(failed)} that did not", code=1)


def _default_scale() -> str:
    import torch  # deferred: only the default of `tru reproduce` asks

    return "paper" if torch.cuda.is_available() else "cpu"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tru {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """tru: targeted reasoning unlearning experiment runner."""


def main() -> None:
    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        app(prog_name="tru")
    finally:
        collector.freeze_before_exit()


if __name__ == "__main__":
    sys.exit(main())
