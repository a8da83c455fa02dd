"""One module per subcommand; each exposes `run(cfg, recorder)`. A command imports only its own
stage (looked up by name), so `tru eval` never pays for the training stack's imports."""

import importlib

MODULES = {"finetune": "finetune", "generate-targets": "targets", "unlearn": "unlearn", "eval": "evaluate",
           "pipeline": "pipeline", "attack": "attack"}


def stage(command: str):
    """The `run` function of `command`'s stage module."""
    return importlib.import_module(f"{__name__}.{MODULES[command]}").run
