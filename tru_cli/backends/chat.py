"""Many chat requests through one backend: cache first, then the backend for what is missing,
a validator on every answer (a rejected answer is asked again as a new attempt), and the counts
that go to results.json (requests, retries, cached answers, tokens, cost, seconds).

Backends only turn messages into replies (`stream` yields each answer as it completes); retries on
429/5xx/timeouts happen inside the OpenAI client, so here a retry means a *rejected answer*: a
target that leaks its forget item's answer, or a judge reply that is not valid JSON.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

from tru_cli import progress
from tru_cli.backends.cache import RequestCache, request_key
from tru_cli.errors import TruError

log = logging.getLogger("tru")


@dataclass
class ChatReply:
    content: str
    reasoning: str | None = None  # deepseek-reasoner's reasoning_content; None for plain chat models
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens
    error: str | None = None  # the server refused this request alone (e.g. http_400): not cached


REPLY_FIELDS = ("content", "reasoning", "usage", "error")  # what a cache entry replays (not its status)


class Reject(Exception):
    """Raised by a validator: the answer is unusable (`reason` is counted) and is asked again."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ChatBackend(Protocol):
    name: str
    model: str

    def body(self, messages: list[dict]) -> dict:
        """The request as sent, without credentials: what the cache key hashes."""

    def stream(self, jobs: list[tuple[int, list[dict], int]],
               persist: Callable[[int, int, ChatReply], None]) -> Iterator[tuple[int, ChatReply]]:
        """(job index, reply) for each (index, messages, attempt), in completion order; each answer
        goes to `persist(index, attempt, reply)` the moment it arrives, before it is yielded."""

    def stats(self) -> dict:
        """Transport counts: http requests, retries, statuses, timeouts."""


@dataclass
class Prices:
    """US dollars per million tokens; None when unknown (then no cost is reported)."""

    input: float | None = None
    output: float | None = None


class ChatService:
    def __init__(self, backend: ChatBackend, cache: RequestCache, max_attempts: int = 3,
                 prices: Prices | None = None, label: str = "requests", budget_usd: float | None = None,
                 section: str = "generator"):
        if max_attempts < 1:
            raise TruError(f"max_attempts={max_attempts} must be at least 1")
        self.backend, self.cache, self.max_attempts = backend, cache, max_attempts
        self.prices, self.label = prices or Prices(), label
        self.budget, self.section = budget_usd, section
        if budget_usd is not None and (self.prices.input is None or self.prices.output is None):
            raise TruError(f"{section}.budget_usd={budget_usd} needs {section}.price_per_mtok (input and output "
                           "USD per million tokens) to count what is spent")
        self.counts: Counter = Counter()
        self.rejections: Counter = Counter()
        self.seconds = 0.0

    def run(self, messages: list[list[dict]], accept: Callable[[int, ChatReply], object]) -> list:
        """One accepted value per conversation, or None where this run's attempts were all rejected.

        Cached answers are replayed first (through `accept` again); an item whose cached answers were
        all rejected is asked again with the next attempt numbers, so a rerun re-asks only what earlier
        runs left without a usable answer, up to `max_attempts` new requests per item and run."""
        start = time.perf_counter()
        results: list = [None] * len(messages)
        bodies = [self.backend.body(m) for m in messages]
        attempt = dict.fromkeys(range(len(messages)), 0)  # next attempt number of each open item
        asked = dict.fromkeys(range(len(messages)), 0)    # requests sent for it in this run

        def take(i: int, reply: ChatReply) -> bool:
            try:
                results[i] = accept(i, reply)
                return True
            except Reject as rej:
                self.rejections[rej.reason] += 1
                return False

        for i in range(len(messages)):  # replay what earlier runs paid for
            while (cached := self.cache.get(request_key(bodies[i], attempt[i]))) is not None:
                self.counts["cached"] += 1
                if take(i, ChatReply(**{k: v for k, v in cached.items() if k in REPLY_FIELDS})):
                    del attempt[i]
                    break
                attempt[i] += 1
        reasked = [i for i, a in attempt.items() if a > 0]
        if reasked:
            log.info("%s: asking again for %d item(s) whose earlier answers were all rejected", self.label,
                     len(reasked))
        self.counts["reasked"] += len(reasked)

        def persist(i: int, a: int, reply: ChatReply) -> None:  # called the moment an answer arrives
            self.cache.put(request_key(bodies[i], a), {**asdict(reply), "status": "answered"})

        with progress.track(f"{self.backend.name} {self.label}", len(attempt)) as bar:
            while attempt:
                ask = [(i, messages[i], a) for i, a in attempt.items()]
                if self.budget is not None:  # no more at once than the budget still pays for
                    ask = ask[:self.affordable(min(len(ask), int(getattr(self.backend, "concurrency", 8))))]
                for i, reply in self.backend.stream(ask, persist):
                    if reply.error:  # refused by the server: the item is missing, asked again next run
                        self.rejections[reply.error] += 1
                        self.counts["failed"] += 1
                        log.warning("%s item %d: the server refused the request (%s); recorded as missing",
                                    self.label, i, reply.error)
                        del attempt[i]
                        bar.advance(1)
                        continue
                    self.counts["answered"] += 1
                    self.counts["prompt_tokens"] += int(reply.usage.get("prompt_tokens") or 0)
                    self.counts["completion_tokens"] += int(reply.usage.get("completion_tokens") or 0)
                    asked[i] += 1
                    if take(i, reply):
                        del attempt[i]
                    else:  # recorded as rejected: a rerun asks for this item again
                        self.cache.put(request_key(bodies[i], attempt[i]), {**asdict(reply), "status": "rejected"})
                        attempt[i] += 1
                        if asked[i] >= self.max_attempts:
                            self.counts["failed"] += 1
                            log.warning("%s item %d: rejected %d time(s); recorded as missing (a rerun asks "
                                        "again)", self.label, i, asked[i])
                            del attempt[i]
                    if i not in attempt:
                        bar.advance(1)
        self.seconds += time.perf_counter() - start
        return results

    def cost(self, usage: dict) -> float:
        return (int(usage.get("prompt_tokens") or 0) * self.prices.input
                + int(usage.get("completion_tokens") or 0) * self.prices.output) / 1e6

    def spent(self) -> tuple[float, float, int]:
        """(USD spent on every answer in the cache, this run's and earlier runs', the dearest answer's
        cost, how many answers): what a budget counts."""
        costs = [self.cost(reply.get("usage") or {}) for reply in self.cache.entries.values()]
        return sum(costs), max(costs, default=0.0), len(costs)

    def affordable(self, wanted: int) -> int:
        """How many of `wanted` requests the budget still pays for, each counted at the dearest answer
        bought so far (or, before any, at its max_tokens of output); a stop in one line at none."""
        total, dearest, bought = self.spent()
        per_request = dearest or (int(getattr(self.backend, "max_tokens", None) or 4096) * self.prices.output / 1e6)
        n = min(wanted, int((self.budget - total) // per_request)) if per_request > 0 else wanted
        if n < 1:
            where = f" ({self.cache.path})" if self.cache.path else ""
            raise TruError(f"{self.section}.budget_usd={self.budget} would be passed by the next request: "
                           f"${total:.4f} spent on {bought} answers, kept in the request cache{where}; raise "
                           f"{self.section}.budget_usd to go on (nothing bought is asked again)")
        return n

    def summary(self, prefix: str) -> dict:
        """Counts for results.json; tokens and cost cover this run's answers, not cached ones."""
        out = {f"{prefix}/{k}": v for k, v in self.backend.stats().items()}
        for key in ("answered", "cached", "reasked", "failed", "prompt_tokens", "completion_tokens"):
            out[f"{prefix}/{key}"] = self.counts[key]
        for reason, n in self.rejections.items():
            out[f"{prefix}/rejected_{reason}"] = n
        if self.prices.input is not None and self.prices.output is not None:
            out[f"{prefix}/cost_usd"] = (self.counts["prompt_tokens"] * self.prices.input
                                         + self.counts["completion_tokens"] * self.prices.output) / 1e6
        out[f"{prefix}/seconds"] = self.seconds
        return out
