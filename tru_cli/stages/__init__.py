"""One module per subcommand; each exposes `run(cfg, recorder)`."""

from tru_cli.stages import attack, evaluate, finetune, pipeline, targets, unlearn

STAGES = {
    "finetune": finetune.run,
    "generate-targets": targets.run,
    "unlearn": unlearn.run,
    "eval": evaluate.run,
    "pipeline": pipeline.run,
    "attack": attack.run,
}
