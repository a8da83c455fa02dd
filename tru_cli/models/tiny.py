"""The tiny model of the embedded default: a small Llama and a byte-level BPE tokenizer trained
locally with `tokenizers`, saved like any hub checkpoint so every later stage loads it by path."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"]
REASONING_TAGS = ["<think>", "</think>"]
CHAT_TEMPLATE = (
    "{{ '<|bos|>' }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ '<|system|>' + m['content'] }}"
    "{% elif m['role'] == 'user' %}{{ '<|user|>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<|assistant|>' + m['content'] + '<|eos|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int, model_max_length: int):
    """Byte-level BPE on the benchmark's own text (any other text still encodes, byte by byte)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|bos|>", eos_token="<|eos|>",
                                  pad_token="<|pad|>",
                                  additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
                                  model_max_length=model_max_length)
    tok.chat_template = CHAT_TEMPLATE
    # Reasoning delimiters as whole (non-special) tokens, as reasoning models have them, so the
    # think-tag target format costs two tokens and decoded text keeps the tags.
    tok.add_tokens(REASONING_TAGS)
    return tok


def build_tiny(model_cfg: DictConfig, texts: list[str]):
    """A fresh random Llama of `model.architecture` with its tokenizer trained on `texts`."""
    arch = OmegaConf.to_container(model_cfg.architecture, resolve=True)
    tok = train_tokenizer(texts, model_cfg.tokenizer.vocab_size, model_cfg.max_length)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **arch)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
