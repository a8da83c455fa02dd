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
        # what the published TOFU checkpoints were trained with (model configs): a system message and
        # the chat template's date (Llama-3.x), or, for a literal template, the text between the
        # prompt and the answer (" " after "Answer:"; "" after Llama-2's "[/INST]")
        self.system_prompt = model_cfg.get("system_prompt")
        self.date_string = model_cfg.get("date_string")
        self.answer_prefix = model_cfg.get("answer_prefix", " ") if self.literal else ""
        self.max_length = int(model_cfg.max_length)
        # question -> prompt ids: an eval set scores every answer variant (TOFU: the answer, its
        # paraphrase, five perturbed) after the same prompt, and templating it is most of encoding's time
        self._prompts: dict[str, list[int]] = {}

    def prompt_text(self, question: str, history: list[tuple[str, str]] | None = None) -> str:
        """The prompt as text: earlier (question, answer) turns if any (in-context attacks), then the
        question, in the literal template or the chat template (with the model's system prompt and
        date when its config gives them)."""
        history = history or []
        if self.literal:
            shots = "".join(self.template.format(question=q).rstrip(" ") + self.answer_prefix + a + "\n\n"
                            for q, a in history)
            return shots + self.template.format(question=question).rstrip(" ")
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        turns = [m for q, a in history for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        extra = {"date_string": self.date_string} if self.date_string else {}
        return self.tok.apply_chat_template([*system, *turns, {"role": "user", "content": question}],
                                            tokenize=False, add_generation_prompt=True, **extra)

    def prompt_ids(self, question: str, history: list[tuple[str, str]] | None = None,
                   prefill: str | None = None) -> list[int]:
        """Ids of `prompt_text`, and optionally the start of the assistant's answer (prefill attacks)."""
        if history:
            ids = self._templated_ids(question, history)
        else:
            if question not in self._prompts:
                self._prompts[question] = self._templated_ids(question)
            ids = list(self._prompts[question])  # the caller's own copy
        if prefill:
            ids = ids + self.tok(self.answer_prefix + prefill, add_special_tokens=False)["input_ids"]
        return ids

    def _templated_ids(self, question: str, history: list[tuple[str, str]] | None = None) -> list[int]:
        ids = self.tok(self.prompt_text(question, history), add_special_tokens=False)["input_ids"]
        if self.literal and self.tok.bos_token_id is not None:
            ids = [self.tok.bos_token_id] + ids  # a chat template writes its own
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        return self.tok(self.answer_prefix + answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]

    def encode(self, question: str, answer: str) -> dict:
        """Prompt + answer within `max_length`: a question too long for the answer beside it (a MUSE
        or WMDP passage as the user message) is cut at its end, never the answer (a TRU target's
        refusal comes last); only an answer that cannot fit alone loses tokens (`dropped`)."""
        reply = self.answer_ids(answer)
        prompt = self.prompt_ids(question)
        budget = self.max_length - len(reply)
        if len(prompt) > budget:
            prompt = self._fit_question(question, len(prompt), budget)
        return self._join(prompt, reply)

    def _fit_question(self, question: str, prompt_len: int, budget: int) -> list[int]:
        """Prompt ids of the question cut (in tokens, re-tokenised) so that the prompt fits `budget`;
        the chat template around it stays whole. An empty question when not even that fits."""
        words = self.tok(question, add_special_tokens=False)["input_ids"]
        keep = len(words) - (prompt_len - max(budget, 0))
        while True:
            prompt = self.prompt_ids(self.tok.decode(words[:max(keep, 0)]))
            if len(prompt) <= budget or keep <= 0:
                return prompt
            keep -= len(prompt) - budget  # re-tokenising the cut text can merge or split a token

    def encode_text(self, text: str) -> dict:
        """A raw passage (MUSE/WMDP corpora): every token is a label, no prompt, no chat template."""
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        ids = (bos + self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id])[: self.max_length]
        return {"input_ids": ids, "labels": [IGNORE] * len(bos) + ids[len(bos):]}

    def encode_row(self, row: dict) -> dict:
        """A QA row (question -> answer) or a text row (the whole passage)."""
        return self.encode(row["question"], row["answer"]) if "question" in row else self.encode_text(row["text"])

    def encode_prompt(self, prompt: list[int], answer: str) -> dict:
        """An answer after ready-made prompt ids (attacks build their own prompts); a prompt too long
        for the answer beside it loses its start (the turns nearest the answer stay)."""
        reply = self.answer_ids(answer)
        budget = max(self.max_length - len(reply), 0)
        return self._join(prompt[len(prompt) - budget:] if len(prompt) > budget else prompt, reply)

    def _join(self, prompt: list[int], reply: list[int]) -> dict:
        """Prompt (masked) + reply, cut at `max_length`; `dropped` counts reply tokens that did not
        fit (present only when some did not)."""
        ids = (prompt + reply)[: self.max_length]
        labels = ([IGNORE] * len(prompt) + reply)[: self.max_length]
        encoded = {"input_ids": ids, "labels": labels}
        if len(prompt) + len(reply) > self.max_length:
            encoded["dropped"] = len(prompt) + len(reply) - max(self.max_length, len(prompt))
        return encoded


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
        # sub-examples are dicts; anything else riding on a row (the IDK answers of later epochs) is not
        return {key: pad([f[key] for f in features], self.pad_id) for key, value in features[0].items()
                if isinstance(value, dict)}
