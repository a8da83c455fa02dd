"""Secrets (API keys) that must never reach a log, results.json, a cache or wandb.

A backend registers the key it read from the environment; every log handler then gets a filter
that replaces it, and `scrub` cleans any text tru writes itself (error messages in results.json).
Config dumps hold only the *name* of the environment variable, never its value.
"""

from __future__ import annotations

import logging

_SECRETS: set[str] = set()
MASK = "***"


def scrub(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, MASK)
    return text


class _Filter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = record.getMessage()
            cleaned = scrub(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER = _Filter()


def register(secret: str | None) -> None:
    """Mask `secret` from now on in every handler of the root logger (Hydra's console and file)."""
    if not secret or len(secret) < 4:  # a 1-3 character "key" would mask ordinary words
        return
    _SECRETS.add(secret)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
