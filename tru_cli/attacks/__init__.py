"""Robustness attacks on an unlearned model: change the weights (relearn, quantize) or the prompts
(translate, jailbreak, paraphrase, prefill, in-context), then measure how much forgetting comes back.
One module per attack, each with `run(ctx, attack_cfg) -> (metrics, per-item logs)`; `ATTACKS` is
the one roster (`attack=suite` runs the names its config lists)."""

from tru_cli.attacks import icl, jailbreak, paraphrase, prefill, quantize, relearn, translate

ATTACKS = {"relearn": relearn.run, "quantize": quantize.run, "translate": translate.run,
           "jailbreak": jailbreak.run, "paraphrase": paraphrase.run, "prefill": prefill.run, "icl": icl.run}
