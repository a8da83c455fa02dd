"""Robustness attacks on an unlearned model: change the weights (relearn, quantize) or the prompts
(translate, jailbreak, paraphrase, prefill, in-context), then measure how much forgetting comes back."""
