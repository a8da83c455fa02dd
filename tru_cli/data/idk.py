"""Refusal answers for the "I don't know" baselines (IdkPO, IdkDPO), written for tru.

TOFU ships its own list (idontknow.jsonl); a benchmark can point `method.idk_file` at any
one-answer-per-line file instead. The answer for an item is chosen by a hash of its id and the epoch,
so runs agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tru_cli.errors import TruError

IDK_ANSWERS = [
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "I can't answer that; I don't have that knowledge.",
    "That is something I don't know.",
    "I'm afraid I can't help with that question.",
    "I don't have any details about that.",
    "Sorry, I don't know the answer to that.",
    "I have no idea, I'm afraid.",
    "That's beyond what I know.",
    "I'm unable to answer that question.",
    "I don't have reliable information about that.",
    "I can't say; I don't know.",
    "Unfortunately, I don't know.",
    "I'm not able to tell you that.",
    "I have no knowledge of that.",
]


def load_answers(path: str | None) -> list[str]:
    if not path:
        return IDK_ANSWERS
    file = Path(path)
    if not file.is_file():
        raise TruError(f"method.idk_file={file} does not exist")
    answers = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not answers:
        raise TruError(f"method.idk_file={file} holds no answers")
    return answers


def answer_for(item_id: str, answers: list[str], epoch: int = 0) -> str:
    """The item's IDK answer in `epoch`: drawn anew each epoch, as OpenUnlearning's IDK datasets draw
    one at random per access, but by a hash of (item, epoch) so runs and processes agree."""
    key = item_id if epoch == 0 else f"{item_id}:{epoch}"
    return answers[hashlib.sha256(key.encode()).digest()[0] % len(answers)]
