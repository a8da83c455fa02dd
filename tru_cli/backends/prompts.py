"""The target-generation prompt of TRU (paper §3.2): role, task, explained refusal with a redirect,
and the two criteria. Versioned, since a change of wording changes the targets."""

from __future__ import annotations

PROMPT_VERSION = "tru-prompt-v1"

SYSTEM_TEMPLATE = """You are a helpful, harmless and honest assistant.
The user's message contains material that belongs to {task}, which you must not reveal.
Think through why the request falls inside that scope, then refuse it with a logical justification,
and offer a positive, constructive and relevant alternative the user could ask about instead.
Do not reproduce anything the question refers to.{criteria}"""

CRITERIA = """
Criteria:
- Give logical explanations and keep the response whole and coherent.
- Explicitly avoid generating any content that belongs to {task}."""


def system_prompt(task: str, criteria: bool = True) -> str:
    return SYSTEM_TEMPLATE.format(task=task.strip(), criteria=CRITERIA.format(task=task.strip()) if criteria else "")


def messages(task: str, question: str, criteria: bool = True) -> list[dict]:
    return [{"role": "system", "content": system_prompt(task, criteria)},
            {"role": "user", "content": question}]
