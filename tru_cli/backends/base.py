"""The one interface every generation backend implements (offline templates now; OpenAI-compatible
APIs and local transformers models plug in behind it)."""

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
