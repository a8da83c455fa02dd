"""The request and result of the offline target backend (templates, no model).

The `openai` and `hf` backends do not implement this: they answer chat messages through
`backends/chat.py`'s `ChatBackend` protocol (`body`, `stream`, `stats`), and a `ChatService` adds the
cache, the validator and the counts; `targets/generate.py` turns their replies into targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class TargetRequest:
    """One forget item to write a target for. `answer` is used only to check for leaks."""

    id: str
    question: str
    messages: list[dict]
    answer: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class TargetResult:
    id: str
    reasoning: str
    refusal: str
    usage: dict = field(default_factory=dict)


class TargetBackend(Protocol):
    name: str
    model: str

    def generate(self, requests: list[TargetRequest]) -> list[TargetResult]:
        """One result per request, in order."""
