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


# For chat models that do not return their reasoning separately (deepseek-reasoner does, in
# `reasoning_content`): the trace is asked for between tags, which tru then splits off.
THINK_TAGS = """
Write your reasoning between <think> and </think> first, then only the reply to the user."""


def system_prompt(task: str, criteria: bool = True, think_tags: bool = False) -> str:
    text = SYSTEM_TEMPLATE.format(task=task.strip(), criteria=CRITERIA.format(task=task.strip()) if criteria else "")
    return text + (THINK_TAGS if think_tags else "")


def messages(task: str, question: str, criteria: bool = True, think_tags: bool = False) -> list[dict]:
    return [{"role": "system", "content": system_prompt(task, criteria, think_tags)},
            {"role": "user", "content": question}]


def split_target(reasoning: str | None, content: str) -> tuple[str, str]:
    """(reasoning trace, refusal) of one reply: a separate reasoning field when the API gives one,
    else the text between <think> tags (an opening tag may sit in the chat template, as with Qwen3);
    an untagged reply is all refusal, with no trace."""
    content = content or ""
    if reasoning:
        return reasoning.strip(), content.split("</think>")[-1].strip()
    if "</think>" in content:
        head, tail = content.split("</think>", 1)
        return head.split("<think>", 1)[-1].strip(), tail.strip()
    return "", content.strip()
