"""Evaluation drivers for the non-TOFU benchmarks: each takes the in-memory model, its tokenizer
and the config, and returns (metrics, per-item logs by name). TOFU-format evaluation (the embedded
default, TOFU) lives in stages/evaluate.py."""

from __future__ import annotations


def _muse(model, tok, cfg):
    from tru_cli.evals.muse import evaluate

    return evaluate(model, tok, cfg)


def _wmdp(model, tok, cfg):
    from tru_cli.evals.wmdp import evaluate

    return evaluate(model, tok, cfg)


EVALUATORS = {"muse": _muse, "wmdp": _wmdp}
