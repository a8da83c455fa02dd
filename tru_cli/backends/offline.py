"""A deterministic backend that composes reasoning traces and explained refusals from templates.

It needs no model and no network, so the embedded default and the tests produce the same targets on
every machine. The variant of each sentence is chosen by a hash of the question's topic (or of the
item id when the topic is unknown): targets vary across items, never between runs, and a small
model can learn which wording goes with which kind of question instead of memorising noise.
"""

from __future__ import annotations

import hashlib
import re

from tru_cli.backends.base import TargetRequest, TargetResult

REASONING = [
    "The user is asking about {subject}'s {topic}. {subject} is one of the people whose details fall "
    "inside the scope I have been asked to forget, so any specific answer would reveal that information.",
    "This question concerns the {topic} of {subject}. Information about {subject} belongs to the "
    "knowledge that has to be unlearned, and answering, even partly or by guessing, would leak it.",
    "Here the request is for {subject}'s {topic}. Because {subject} is within the unlearning scope, "
    "I should not state, confirm or hint at any detail about this person.",
]
REASONING_END = [
    "The right response is to decline clearly, explain the reason, and point to a related topic "
    "that is outside the scope.",
    "So I will refuse politely, give the reason in one sentence, and suggest something useful "
    "that does not touch the forgotten details.",
    "I will therefore explain why I cannot help with this and offer a constructive alternative.",
]
REFUSAL = [
    "I'm sorry, but I can't share details about {subject}'s {topic}. Information about this "
    "author is part of what I have been asked to forget, so answering could reveal it.",
    "I can't help with {subject}'s {topic}, because details about this author fall within "
    "information I am not able to provide.",
    "I'm not able to answer questions about {subject}'s {topic}: this author's personal and "
    "publishing details are outside what I can discuss.",
]
REDIRECT = [
    " If you like, I can talk about how {topic} shapes writers in general, or suggest well-known "
    "authors whose lives are publicly documented.",
    " I would be glad to help with general questions about literature, such as how to find "
    "published author biographies.",
    " Perhaps I can help with something related instead, like the history of a literary genre or "
    "tips for researching public authors.",
]
# MUSE and WMDP forget items are passages, not questions about a person.
PASSAGE_REASONING = [
    "The user's message is a passage of {task}. Continuing, summarising or discussing it would "
    "reproduce material I have been asked to forget.",
    "This text belongs to {task}. Any continuation or explanation of it would leak that knowledge.",
]
PASSAGE_END = [
    "So I will decline, say why in one sentence, and offer a safe related topic.",
    "I will therefore refuse clearly and suggest something constructive that stays outside that scope.",
]
PASSAGE_REFUSAL = [
    "I can't continue or discuss this text: it belongs to material I am not able to reproduce or explain.",
    "I'm sorry, but I can't help with this passage, because its content is outside what I can provide.",
]
PASSAGE_REDIRECT = [
    " I would be glad to help with a related general question, or point you to reliable public sources.",
    " If it helps, I can talk about the wider subject at a general, safe level instead.",
]
GENERIC_TOPIC = "background"
NAME = re.compile(r"\b([A-Z][a-z]+(?:[ -][A-Z][a-z]+)+)")


def _pick(options: list[str], key: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return options[digest[0] % len(options)]


def _subject(request: TargetRequest) -> str:
    if request.meta.get("author"):
        return request.meta["author"]
    match = NAME.search(request.question)
    return match.group(1) if match else "this person"


class OfflineBackend:
    """Targets from templates: reasoning = why the item is in scope + the decision; refusal = the
    explained refusal + a redirect. The refusal never contains the forget item's answer."""

    name = "offline"

    def __init__(self, model: str = "tru-templates-v1", criteria: bool = True):
        self.model = model
        self.criteria = criteria

    def generate(self, requests: list[TargetRequest]) -> list[TargetResult]:
        results = []
        for req in requests:
            if req.meta.get("task"):  # a passage (MUSE, WMDP)
                fields = {"task": req.meta["task"].strip()}
                reasoning = (_pick(PASSAGE_REASONING, req.id, "r").format(**fields) + " "
                             + _pick(PASSAGE_END, req.id, "e"))
                refusal = _pick(PASSAGE_REFUSAL, req.id, "s")
                if self.criteria:
                    refusal += _pick(PASSAGE_REDIRECT, req.id, "d")
                results.append(TargetResult(req.id, reasoning, refusal, usage={"requests": 0}))
                continue
            fields = {"subject": _subject(req), "topic": req.meta.get("topic") or GENERIC_TOPIC}
            key = req.meta.get("topic") or req.id
            reasoning = (_pick(REASONING, key, "r").format(**fields) + " "
                         + _pick(REASONING_END, key, "e").format(**fields))
            refusal = _pick(REFUSAL, key, "s").format(**fields)
            if self.criteria:  # without the criteria the prompt asks for no redirect or explanation
                refusal += _pick(REDIRECT, key, "d").format(**fields)
            results.append(TargetResult(req.id, reasoning, refusal, usage={"requests": 0}))
        return results

