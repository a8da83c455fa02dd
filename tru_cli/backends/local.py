"""A local transformers model as a chat backend: the model's chat template, batched generation
(sampling with a seed per batch and attempt, so a rejected answer is asked again differently),
prompts cut from the left to fit the context window."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from tru_cli.backends.chat import ChatReply
from tru_cli.models import batching, loading


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
        window = getattr(self.net.config, "max_position_embeddings", None) or 4096
        self.max_prompt = max(1, int(window) - self.max_new_tokens)
        self.generated = 0

    def body(self, messages: list[dict]) -> dict:
        return {"model": self.model, "messages": messages, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "seed": self.seed}

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_prompt:]

    def stream(self, jobs: list[tuple[int, list[dict], int]], persist=None) -> Iterator[tuple[int, ChatReply]]:
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
