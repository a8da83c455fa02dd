"""Turning (question, answer) pairs into token ids with the prompt masked, and padding batches.

The prompt goes through the model's chat template (or the literal template of the model config);
the answer follows, then EOS. Labels are -100 on the prompt and on padding, so losses and
probabilities cover answer tokens only, as in TOFU.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

IGNORE = -100


class PromptFormatter:
    """Prompt ids for a question, and answer ids, for one model and its tokenizer."""

    def __init__(self, tokenizer, model_cfg: DictConfig):
        self.tok = tokenizer
        self.literal = model_cfg.prompt_format == "literal" or not getattr(tokenizer, "chat_template", None)
        self.template = model_cfg.literal_template
        self.max_length = int(model_cfg.max_length)

    def prompt_ids(self, question: str, history: list[tuple[str, str]] | None = None,
                   prefill: str | None = None) -> list[int]:
        """Ids of the prompt: earlier (question, answer) turns if any (in-context attacks), the
        question, and optionally the start of the assistant's answer (prefill attacks)."""
        history = history or []
        if self.literal:
            shots = "".join(self.template.format(question=q).rstrip(" ") + " " + a + "\n\n" for q, a in history)
            text = shots + self.template.format(question=question).rstrip(" ")
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            ids = ([self.tok.bos_token_id] if self.tok.bos_token_id is not None else []) + ids
        else:
            turns = [m for q, a in history for m in ({"role": "user", "content": q},
                                                     {"role": "assistant", "content": a})]
            text = self.tok.apply_chat_template([*turns, {"role": "user", "content": question}],
                                                tokenize=False, add_generation_prompt=True)
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if prefill:
            ids = ids + self.tok((" " + prefill) if self.literal else prefill, add_special_tokens=False)["input_ids"]
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        text = (" " + answer) if self.literal else answer
        return self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]

    def encode(self, question: str, answer: str) -> dict:
        return self.encode_prompt(self.prompt_ids(question), answer)

    def encode_text(self, text: str) -> dict:
        """A raw passage (MUSE/WMDP corpora): every token is a label, no prompt, no chat template."""
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        ids = (bos + self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id])[: self.max_length]
        return {"input_ids": ids, "labels": [IGNORE] * len(bos) + ids[len(bos):]}

    def encode_row(self, row: dict) -> dict:
        """A QA row (question -> answer) or a text row (the whole passage)."""
        return self.encode(row["question"], row["answer"]) if "question" in row else self.encode_text(row["text"])

    def encode_prompt(self, prompt: list[int], answer: str) -> dict:
        """An answer after ready-made prompt ids (attacks build their own prompts)."""
        reply = self.answer_ids(answer)
        ids = (prompt + reply)[: self.max_length]
        labels = ([IGNORE] * len(prompt) + reply)[: self.max_length]
        return {"input_ids": ids, "labels": labels}


def pad(features: list[dict], pad_id: int) -> dict:
    """Right-pad `input_ids`/`labels` to the longest row; returns tensors with an attention mask."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.tensor(f["input_ids"])
        labels[row, :n] = torch.tensor(f["labels"])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    if all("ref_nll" in f for f in features):  # reference statistics computed before training
        batch["ref_nll"] = torch.tensor([f["ref_nll"] for f in features], dtype=torch.float32)
    return batch


class QACollator:
    """For plain SFT batches (finetune, relearning)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        return pad(features, self.pad_id)


class UnlearnCollator:
    """For unlearning batches: each feature holds sub-examples (`target`, `forget`, `retain`)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        return {key: pad([f[key] for f in features], self.pad_id) for key in features[0]}
