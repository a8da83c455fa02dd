"""A local transformers model as a chat backend: the model's chat template, batched generation
(sampling with a seed per batch and attempt, so a rejected answer is asked again differently),
prompts cut from the left to fit the context window.

`scoring: digits` (the judge of a small local model, which seldom writes the JSON form it is asked
for): the reply is the form the prompt asks for, each score filled with the expected value of the
model's next-token probabilities over 0-10 right after that field's `"score": ` (G-Eval's
probability-weighted score), the form's text written by tru around them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from tru_cli.backends.chat import ChatReply
from tru_cli.models import batching, loading

# A field of the JSON form a judge prompt asks for: "Relevance": {"reason": "...", "score": <number>}
SCORE_FIELD = re.compile(r'"(\w+)": \{"reason": "\.\.\.", "score": <number>\}')
REASON = "expected value of the judge model's score-token probabilities"


class HFChat:
    name = "hf"

    def __init__(self, cfg: DictConfig, model_path: str, device: DictConfig):
        self.model = str(model_path)
        self.net, self.tok = loading.load(model_path, device)
        self.net.to(loading.device_of(device)).eval()
        self.max_new_tokens = int(cfg.max_tokens)
        self.batch_size = int(cfg.batch_size)
        self.temperature = float(cfg.get("temperature") or 0.0)
        self.seed = int(cfg.get("seed") or 0)
        self.scoring = str(cfg.get("scoring") or "generate")
        self.digits = [self.tok(str(d), add_special_tokens=False)["input_ids"][-1] for d in range(10)]
        window = getattr(self.net.config, "max_position_embeddings", None) or 4096
        self.max_prompt = max(1, int(window) - self.max_new_tokens)
        self.generated = 0

    def body(self, messages: list[dict]) -> dict:
        body = {"model": self.model, "messages": messages, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "seed": self.seed}
        return {**body, "scoring": self.scoring} if self.scoring != "generate" else body

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_prompt:]

    @torch.no_grad()
    def _digit_probs(self, text: str) -> list[float]:
        """p(d) over the ten digit tokens after `text` (tokenised whole, cut from the left to the window)."""
        ids = self.tok(text, add_special_tokens=False)["input_ids"][-self.max_prompt:]
        logits = self.net(input_ids=torch.tensor([ids], device=self.net.device)).logits[0, -1]
        probs = torch.softmax(logits.float(), -1)[self.digits]
        return (probs / probs.sum()).tolist()

    def _scored_form(self, messages: list[dict]) -> ChatReply | None:
        """The asked JSON form with each score read from the probabilities (see the module doc), or None
        when the prompt asks for no such form."""
        fields = SCORE_FIELD.findall(messages[-1]["content"])
        if not fields:
            return None
        base = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        form: dict = {}
        for field in fields:
            head = base + json.dumps(form)[:-1] + (", " if form else "") + json.dumps(field) + \
                f': {{"reason": "{REASON}", "score": '
            probs = self._digit_probs(head)
            ten = probs[1] * self._digit_probs(head + "1")[0]
            expected = sum(d * p for d, p in enumerate(probs)) - ten + 10 * ten  # "1" then "0" is a 10
            form[field] = {"reason": REASON, "score": round(expected, 3)}
        return ChatReply(content=json.dumps(form), usage={"prompt_tokens": len(self._prompt_ids(messages)),
                                                          "completion_tokens": 0})

    def stream(self, jobs: list[tuple[int, list[dict], int]], persist=None) -> Iterator[tuple[int, ChatReply]]:
        if self.scoring == "digits":
            for i, messages, attempt in jobs:
                reply = self._scored_form(messages)
                if reply is None:
                    reply = ChatReply(content="", error="digits_scoring_without_a_score_form")
                self.generated += 1
                if persist and not reply.error:
                    persist(i, attempt, reply)
                yield i, reply
            return
        sampling = ({"do_sample": True, "temperature": self.temperature} if self.temperature > 0
                    else {"do_sample": False})
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start:start + self.batch_size]
            torch.manual_seed(self.seed + 7919 * batch[0][2] + start)
            prompts = [self._prompt_ids(messages) for _, messages, _ in batch]
            outputs = batching.generate(self.net, self.tok, prompts, self.max_new_tokens, len(batch), **sampling)
            for (i, _, attempt), prompt, (text, count) in zip(batch, prompts, outputs, strict=True):
                self.generated += 1
                reply = ChatReply(content=text, usage={"prompt_tokens": len(prompt), "completion_tokens": count})
                if persist:
                    persist(i, attempt, reply)
                yield i, reply

    def stats(self) -> dict:
        return {"generations": self.generated}
