"""How a method's configuration turns into one loss: which sub-batches it reads, which reference
quantities it needs, and how the pure functions of `losses.py` combine.

Every method has the same shape:

    L = [use_targets] * CE(target)  +  alpha * ( forget_term + lambda_retain * retain_term )

TRU is `use_targets=true` with a GA-based pair chosen by `method.ga_term`; the baselines set
`forget_loss` and `retain_loss` directly (GradDiff = ga + nll, NPO = npo + nll, IdkPO = idk + nll,
KL = ga + kl, RMU = rmu + rmu, ...).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from tru_cli.methods import losses

FORGET_TERMS = ("ga", "npo", "simnpo", "wga", "idk", "dpo", "rmu", "none")
RETAIN_TERMS = ("nll", "kl", "rmu", "none")
# TRU's GA-based term (paper Eq. 4): the plug-in, as (forget term, retain term).
GA_TERMS = {"graddiff": ("ga", "nll"), "ga": ("ga", "none"), "npo": ("npo", "nll"), "wga": ("wga", "nll")}


def terms(method: DictConfig) -> tuple[str, str]:
    """(forget term, retain term) of a method."""
    if method.get("ga_term"):
        if method.ga_term not in GA_TERMS:
            raise ValueError(f"method.ga_term={method.ga_term}; choose one of {', '.join(GA_TERMS)}")
        return GA_TERMS[method.ga_term]
    forget, retain = method.forget_loss, method.retain_loss
    if forget not in FORGET_TERMS or retain not in RETAIN_TERMS:
        raise ValueError(f"method.forget_loss={forget} / retain_loss={retain}; choose from "
                         f"{', '.join(FORGET_TERMS)} / {', '.join(RETAIN_TERMS)}")
    return forget, retain


def needed_parts(method: DictConfig) -> tuple[str, ...]:
    """Sub-batches the method reads, so no unused forward pass is ever computed."""
    forget, retain = terms(method)
    parts = []
    if method.use_targets:
        parts.append("target")
    if float(method.alpha) == 0.0:  # "w/o L_GA": the forget/retain pair is switched off
        return tuple(parts)
    if forget in ("ga", "npo", "simnpo", "wga", "dpo", "rmu"):
        parts.append("forget")
    if forget in ("idk", "dpo"):
        parts.append("idk")
    if retain != "none":
        parts.append("retain")
    return tuple(parts)


def reference_stats(method: DictConfig) -> tuple[str, ...]:
    """Sub-batches whose reference NLL is computed once before training (NPO, DPO)."""
    forget, _ = terms(method)
    return {"npo": ("forget",), "dpo": ("forget", "idk")}.get(forget, ())


def precomputes_reference(method: DictConfig) -> bool:
    """NPO/DPO reference NLLs: computed once (`method.reference=precompute`, the default) or from a
    held frozen copy on every batch (`model`, the naive way; twice the weights in memory)."""
    return bool(reference_stats(method)) and method.get("reference", "precompute") == "precompute"


def needs_reference_model(method: DictConfig) -> bool:
    """Token-level terms (KL, RMU) need the frozen model's outputs for each new batch; so do
    NPO/DPO when told not to precompute."""
    forget, retain = terms(method)
    per_batch = bool(reference_stats(method)) and not precomputes_reference(method)
    return retain in ("kl", "rmu") or forget == "rmu" or per_batch


def decoder_layer(model, index: int) -> torch.nn.Module:
    """The `index`-th decoder layer (Llama-style `model.model.layers`)."""
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList):
            if not 0 <= index < len(module):
                raise ValueError(f"method.layer={index} but the model has {len(module)} layers")
            return module[index]
    raise ValueError("the model has no `layers` ModuleList to hook for RMU")


class LayerCapture:
    """A forward hook that keeps the output activations of one decoder layer."""

    def __init__(self, layer: torch.nn.Module):
        self.layer = layer
        self.output = None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.output = output[0] if isinstance(output, tuple) else output

    def remove(self) -> None:
        self.handle.remove()


class Objective:
    """Evaluates the configured loss on a batch of sub-batches. Holds the reference model (KL, RMU)
    and RMU's control vector; reference NLLs (NPO, DPO) arrive inside the batch as `ref_nll`."""

    def __init__(self, method: DictConfig, model, ref_model=None, seed: int = 0):
        self.method = method
        self.forget, self.retain = terms(method)
        self.parts = needed_parts(method)
        self.reduce = losses.REDUCTIONS[method.get("reduction", "token")]
        self.ref_model = ref_model
        self.capture = self.ref_capture = None
        if "rmu" in (self.forget, self.retain):
            self.capture = LayerCapture(decoder_layer(model, int(method.layer)))
            if ref_model is not None:
                self.ref_capture = LayerCapture(decoder_layer(ref_model, int(method.layer)))
            gen = torch.Generator().manual_seed(int(seed))
            u = torch.rand(model.config.hidden_size, generator=gen)  # RMU: uniform, then normalised
            self.control = float(method.steering_coeff) * u / u.norm()
        self.tokens_seen = 0

    def _forward(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        self.tokens_seen += int(batch["attention_mask"].sum())
        return out.logits

    def __call__(self, model, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        m, logs, logits, hidden = self.method, {}, {}, {}
        # One forward per sub-batch. Measured (make bench's TRU step, medians of 3): one forward over the
        # sub-batches padded to a common length was 2.5x slower on the tiny model (2,968 against 7,346
        # tokens/s) and 1.7x slower on SmolLM2-135M (70 against 119): targets are longer than forget and
        # retain rows, so padding them together wastes much of the batch, and the logits grow with it.
        for key in self.parts:
            logits[key] = self._forward(model, inputs[key])
            if self.capture is not None:  # RMU reads the hooked layer of this very forward
                hidden[key] = self.capture.output
        self.zero = next(model.parameters()).new_zeros((), dtype=torch.float32)
        total = self.zero
        if m.use_targets:
            logs["target_nll"] = self.reduce(logits["target"], inputs["target"]["labels"])
            total = total + logs["target_nll"]
        if float(m.alpha) == 0.0:
            return total, logs
        forget = self._forget_term(m, inputs, logits, hidden, logs)
        retain = self._retain_term(m, inputs, logits, hidden, logs)
        return losses.tru_loss(total, forget + float(m.lambda_retain) * retain, float(m.alpha)), logs

    def _forget_term(self, m, inputs, logits, hidden, logs) -> torch.Tensor:
        kind = self.forget
        if kind == "none":
            return self.zero
        if kind == "idk":
            logs["idk_nll"] = self.reduce(logits["idk"], inputs["idk"]["labels"])
            return logs["idk_nll"]
        if kind == "rmu":
            batch = inputs["forget"]
            logs["forget_rmu"] = losses.rmu_loss(hidden["forget"], self.control.to(hidden["forget"].device),
                                                 batch["labels"] != losses.IGNORE)
            return logs["forget_rmu"]
        batch = inputs["forget"]
        total_nll, count = losses.token_nll(logits["forget"], batch["labels"])
        logs["forget_nll"] = self.reduce(logits["forget"], batch["labels"])
        if kind == "ga":
            return losses.ga_loss(logs["forget_nll"])
        if kind == "npo":
            return losses.npo_loss(total_nll, self._ref_nll(batch), float(m.beta))
        if kind == "simnpo":
            return losses.simnpo_loss(total_nll / count.clamp(min=1), float(m.beta), float(m.delta))
        if kind == "wga":
            return losses.wga_loss(logits["forget"], batch["labels"], float(m.beta))
        # dpo: the IDK answer wins over the original one
        idk = inputs["idk"]
        idk_nll, _ = losses.token_nll(logits["idk"], idk["labels"])
        return losses.dpo_loss(idk_nll, self._ref_nll(idk), total_nll, self._ref_nll(batch), float(m.beta))

    def _ref_nll(self, batch) -> torch.Tensor:
        """Per-sequence reference NLL: precomputed in the batch, or from the held reference model."""
        if "ref_nll" in batch:
            return batch["ref_nll"]
        with torch.no_grad():
            ref_logits = self.ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return losses.token_nll(ref_logits, batch["labels"])[0]

    def _retain_term(self, m, inputs, logits, hidden, logs) -> torch.Tensor:
        if self.retain == "none" or "retain" not in self.parts:
            return self.zero
        batch = inputs["retain"]
        logs["retain_nll"] = self.reduce(logits["retain"], batch["labels"]).detach() \
            if self.retain != "nll" else self.reduce(logits["retain"], batch["labels"])
        if self.retain == "nll":
            return logs["retain_nll"]
        with torch.no_grad():
            ref_logits = self.ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if self.retain == "kl":
            logs["retain_kl"] = losses.kl_loss(logits["retain"], ref_logits, batch["labels"])
            return logs["retain_kl"]
        logs["retain_rmu"] = losses.rmu_loss(hidden["retain"], self.ref_capture.output,
                                             batch["labels"] != losses.IGNORE)
        return logs["retain_rmu"]
