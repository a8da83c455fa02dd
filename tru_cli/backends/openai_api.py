"""Any OpenAI-compatible chat endpoint (DeepSeek, OpenAI, vLLM, SGLang, ...) through the `openai`
client: its retries (429 honouring Retry-After, 408/409, 5xx, timeouts and connection errors, with
exponential backoff and jitter) are used as they are; tru adds bounded concurrency, a request-rate
limit, and counts of what went over the wire.

deepseek-reasoner returns its chain of thought in `reasoning_content` (vLLM reasoning parsers use
the same field, or `reasoning`) and the answer in `content`; both are kept.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from omegaconf import DictConfig

from tru_cli import redact
from tru_cli.backends.chat import ChatReply
from tru_cli.errors import TruError


def api_key(cfg: DictConfig, section: str) -> str:
    """The key from the environment variable named by `<section>.api_key_env`; checked before any
    request so that a missing key fails at once with the fix."""
    env = cfg.get("api_key_env")
    if not env:
        return "not-needed"  # local servers (vLLM without --api-key) accept any token
    key = os.environ.get(str(env), "").strip()  # a key read from a file often ends in a newline
    if any(c.isspace() or not c.isprintable() for c in key):
        raise TruError(f"{section}.api_key_env={env}: the key in ${env} contains whitespace or control "
                       f"characters; export it again without them")
    if not key:
        raise TruError(f"{section}.api_key_env={env}: the environment variable {env} is not set; "
                       f"export {env}=<your key> (keys are read from the environment only), "
                       f"or set {section}.api_key_env=null for a server that needs none")
    redact.register(key)
    return key


class RateLimiter:
    """At most `per_minute` request starts per minute across threads (evenly spaced)."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        time.sleep(max(0.0, slot - now))


class OpenAIChat:
    name = "openai"

    def __init__(self, cfg: DictConfig, section: str):
        import openai  # deferred: the client is slow to import; only this backend needs it

        for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per HTTP request otherwise
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.section, self.model = section, str(cfg.model)
        self.key_env = cfg.get("api_key_env")
        self.base_url, self.timeout = str(cfg.base_url), float(cfg.timeout)
        self.max_retries = int(cfg.max_retries)
        self.concurrency = int(cfg.concurrency)
        self.max_tokens = cfg.get("max_tokens")  # a budget's bound on one answer before any is bought
        self.params = {k: v for k, v in (("temperature", cfg.get("temperature")),
                                         ("max_tokens", cfg.get("max_tokens"))) if v is not None}
        self.limiter = RateLimiter(cfg.get("requests_per_minute"))
        self.wire: Counter = Counter()
        self.calls = 0
        self._count_lock = threading.Lock()
        # Hooks run for every HTTP request, the client's own retries included, so the rate limit
        # and the counts cover what the server actually saw.
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._on_request],
                                                      "response": [self._on_response]})
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key(cfg, section),
                                    timeout=self.timeout, max_retries=self.max_retries, http_client=http)

    def _on_request(self, request) -> None:
        self.limiter.wait()
        with self._count_lock:
            self.wire["http_requests"] += 1

    def _on_response(self, response) -> None:
        with self._count_lock:
            self.wire["http_responses"] += 1
            if response.status_code == 429:
                self.wire["http_429"] += 1
            elif response.status_code >= 500:
                self.wire["http_5xx"] += 1

    def body(self, messages: list[dict]) -> dict:
        return {"model": self.model, "messages": messages, **self.params}

    def _ask(self, messages: list[dict]) -> ChatReply:
        with self._count_lock:
            self.calls += 1
        response = self.client.chat.completions.create(**self.body(messages))
        if not response.choices:
            raise TruError(f"{self.section}: {self.base_url} returned no choices for model {self.model}")
        message = response.choices[0].message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        usage = response.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) if response.usage else {}
        return ChatReply(content=message.content or "", reasoning=reasoning, usage=usage)

    def _ask_and_keep(self, i: int, messages: list[dict], attempt: int, persist) -> ChatReply:
        """One request in a worker thread; the answer is kept (cache, flushed) before anything else
        happens to it, so a kill loses at most the requests still in flight."""
        reply = self._ask(messages)
        if persist:
            persist(i, attempt, reply)
        return reply

    def stream(self, jobs: list[tuple[int, list[dict], int]], persist=None) -> Iterator[tuple[int, ChatReply]]:
        if not jobs:
            return
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = {pool.submit(self._ask_and_keep, i, messages, attempt, persist): i for i, messages, attempt in jobs}
        fatal = None
        try:
            for future in as_completed(futures):
                if future.cancelled():  # not started before a fatal error
                    continue
                try:
                    reply = self._result(future)
                except TruError as exc:  # stop asking; still collect what is already in flight
                    if fatal is None:
                        fatal = exc
                        for pending in futures:
                            pending.cancel()
                    continue
                yield futures[future], reply
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if fatal is not None:
            raise fatal

    def _result(self, future) -> ChatReply:
        import openai  # deferred: see __init__

        where = f"{self.section}.base_url={self.base_url}"
        try:
            return future.result()
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            # this request alone is refused (content filter, context too long): a rejected item
            return ChatReply(content="", error=f"http_{exc.status_code}")
        except openai.AuthenticationError:
            raise TruError(f"{where} refused the key (401); check the key in "
                           f"${self.key_env}") from None
        except openai.NotFoundError as exc:
            raise TruError(f"{where} does not serve {self.section}.model={self.model} (404): "
                           f"{redact.scrub(str(exc.message))}") from None
        except openai.APITimeoutError:
            raise TruError(f"{where}: no answer within {self.section}.timeout={self.timeout:g}s after "
                           f"{self.max_retries} retries; raise {self.section}.timeout or "
                           f"{self.section}.max_retries (answers so far are cached)") from None
        except openai.APIConnectionError as exc:
            raise TruError(f"cannot reach {where} after {self.max_retries} retries "
                           f"({redact.scrub(str(exc.__cause__ or exc))}); answers so far are cached") from None
        except openai.APIStatusError as exc:
            raise TruError(f"{where} answered {exc.status_code} after {self.max_retries} retries: "
                           f"{redact.scrub(str(exc.message))[:200]} (answers so far are cached)") from None
        except (openai.APIError, ValueError) as exc:  # e.g. 200 with a body that is not JSON
            raise TruError(f"{where} sent an answer that is not an OpenAI chat completion "
                           f"({type(exc).__name__}: {redact.scrub(str(exc))[:120]}); check the URL "
                           f"(answers so far are cached)") from None

    def stats(self) -> dict:
        with self._count_lock:
            wire = dict(self.wire)
        requests = wire.get("http_requests", 0)
        return {"http_requests": requests, "retries": max(0, requests - self.calls),
                "http_429": wire.get("http_429", 0), "http_5xx": wire.get("http_5xx", 0),
                # requests that got no HTTP response: timeouts and dropped connections
                "unanswered": max(0, requests - wire.get("http_responses", 0))}
