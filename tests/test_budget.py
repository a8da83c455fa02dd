"""generator.budget_usd / judge.budget_usd: a run stops in one line before a request would take the
spend past the budget; what was bought stays cached, and a rerun with a larger budget asks only for
what is missing (no request twice)."""

from __future__ import annotations

import pytest

from tests.conftest import run_tru
from tru_cli.backends.cache import RequestCache
from tru_cli.backends.chat import ChatReply, ChatService, Prices
from tru_cli.errors import TruError


class CountingBackend:
    """Answers every request with 1000 prompt and 1000 completion tokens, and logs what it was asked."""

    name, model, concurrency, max_tokens = "counting", "m", 2, 2000

    def __init__(self):
        self.asked: list[str] = []

    def body(self, messages):
        return {"model": self.model, "messages": messages}

    def stream(self, jobs, persist):
        for i, messages, attempt in jobs:
            self.asked.append(messages[0]["content"])
            reply = ChatReply(content=f"answer to {messages[0]['content']}",
                              usage={"prompt_tokens": 1000, "completion_tokens": 1000})
            persist(i, attempt, reply)
            yield i, reply

    def stats(self):
        return {}


def _run(cache_path, budget, backend):
    # $1 / $2 per million input / output tokens: each answer costs $0.003
    service = ChatService(backend, RequestCache(cache_path), prices=Prices(1.0, 2.0), budget_usd=budget,
                          section="judge")
    questions = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
    return service.run(questions, lambda i, reply: reply.content)


def test_a_budget_stops_before_it_is_passed_and_a_rerun_buys_only_what_is_missing(tmp_path):
    cache = tmp_path / "judge.jsonl"
    first = CountingBackend()
    with pytest.raises(TruError) as stop:
        _run(cache, 0.01, first)
    # before any answer a request is counted at max_tokens of output ($0.004): 2 at once, then 1 more
    assert first.asked == ["q0", "q1", "q2"]
    assert str(stop.value).startswith("judge.budget_usd=0.01 would be passed by the next request: $0.0090 spent "
                                      "on 3 answers") and "raise judge.budget_usd to go on" in str(stop.value)
    assert len(cache.read_text().splitlines()) == 3  # what was bought is kept
    again = CountingBackend()
    with pytest.raises(TruError, match=r"\$0\.0180 spent on 6 answers"):
        _run(cache, 0.02, again)
    assert again.asked == ["q3", "q4", "q5"]  # the three bought answers were replayed from the cache
    last = CountingBackend()
    answers = _run(cache, 1.0, last)
    assert last.asked == ["q6", "q7", "q8", "q9"] and answers == [f"answer to q{i}" for i in range(10)]


def test_a_budget_without_prices_or_below_zero_is_one_line(tmp_path):
    with pytest.raises(TruError, match=r"generator.budget_usd=1.0 needs generator.price_per_mtok"):
        ChatService(CountingBackend(), RequestCache(None), budget_usd=1.0)
    proc = run_tru(["generate-targets", "generator=openai", "generator.budget_usd=-1", "logger=none"], tmp_path,
                   check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "generator.budget_usd=-1 must be a number > 0 or null" in lines[0]
