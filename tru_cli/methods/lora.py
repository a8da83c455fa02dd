"""LoRA unlearning (peft): adapters on the configured projections, the base frozen. A reference
model (KL, RMU) is the same network with the adapters switched off, so no second copy is held."""

from __future__ import annotations

from omegaconf import DictConfig

from tru_cli.errors import TruError


def apply(model, lora: DictConfig, checkpointing: bool = False, key: str = "trainer.lora.target_modules"):
    """`model` with LoRA adapters (r, alpha, dropout, target_modules of `lora`); `key` is the setting
    that named the modules, for the one-line error when the model lacks some."""
    # deferred: peft takes about a second to import; only LoRA runs need it
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    absent = [m for m in lora.target_modules if m not in names]
    if absent:  # peft would silently adapt only the others
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if type(m).__name__ == "Linear" and "." in n})
        raise TruError(f"{key} has {', '.join(absent)}, which this model does not have; "
                       f"its linear layers are: {', '.join(linear)}")
    if checkpointing:  # checkpointed blocks need an input that requires grad to backprop into adapters
        model.enable_input_require_grads()
    try:
        config = LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
                            target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. a target module the architecture does not have
        raise TruError(f"{key}: {str(exc).splitlines()[0]}") from None


class AdapterOff:
    """Calls the peft model with its adapters disabled: the frozen start point, for free."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def __call__(self, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model(**kwargs)

    def named_modules(self):  # RMU hooks a decoder layer of the reference; it is the same layer
        return self.peft_model.named_modules()

    def to(self, *args, **kwargs):
        return self


def finalize(peft_model, lora: DictConfig):
    """What gets saved: the merged model, or the peft model (its adapter dir loads with the base)."""
    return peft_model.merge_and_unload() if lora.merge else peft_model


def trainable_count(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
