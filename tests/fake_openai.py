"""A local OpenAI-compatible chat server for tests, with scripted faults.

It answers POST /v1/chat/completions on 127.0.0.1 the way the real endpoints do: deepseek-reasoner
style (`reasoning_content` + `content`) for models whose name contains "reasoner", a tagged
`<think>...</think>` answer otherwise, JSON verdicts to judge prompts, and rewrites to
translation/paraphrase instructions. Faults are scripted per question: the n-th request whose
last user message contains `match` gets the n-th action of its `sequence`:

  "429"       status 429 with a Retry-After header (`retry_after` seconds)
  "500"       status 500
  "400"       status 400 (the request alone is refused, e.g. a content filter)
  "hang"      sleep `hang_seconds` before answering (past the client's timeout)
  "say:TEXT"  status 200 with TEXT as the answer (a leak, a malformed verdict, ...)
  "garbage"   status 200 with a body that is not JSON (a proxy's error page)

Every request is logged (time, question, what was done); the key is checked, never logged.
Run alone with `python tests/fake_openai.py [PORT]` to point a real `tru` run at it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UQ_VERDICT = {"Relevance": {"reason": "reveals nothing", "score": 8},
              "Rejection": {"reason": "clear refusal", "score": 7},
              "Helpfulness": {"reason": "offers a redirect", "score": 6}}
RQ_VERDICT = {"Readability": {"reason": "fluent", "score": 9},
              "Specificity": {"reason": "answers it", "score": 8},
              "Logic": {"reason": "consistent", "score": 7}}


def _content(message: dict) -> str:
    content = message.get("content") or ""
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


class FakeOpenAI:
    def __init__(self, key: str | None = None, faults: list[dict] | None = None, delay: float = 0.0,
                 retry_after: float = 1.0, hang_seconds: float = 3.0):
        self.key, self.faults, self.delay = key, faults or [], delay
        self.retry_after, self.hang_seconds = retry_after, hang_seconds
        self.log: list[dict] = []
        self.seen: dict[tuple[int, str], int] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests_for(self, question: str) -> list[dict]:
        with self.lock:
            return [r for r in self.log if r["question"] == question]

    # -- behaviour --
    def action(self, question: str) -> str:
        """The scripted action for this request of `question` ("ok" when none is left)."""
        with self.lock:
            for n, fault in enumerate(self.faults):
                if fault["match"] in question:
                    count = self.seen.get((n, question), 0)
                    self.seen[(n, question)] = count + 1
                    if count < len(fault["sequence"]):
                        return fault["sequence"][count]
        return "ok"

    def answer(self, model: str, messages: list[dict]) -> dict:
        system = " ".join(_content(m) for m in messages if m["role"] == "system")
        user = _content([m for m in messages if m["role"] == "user"][-1])
        if "[Response begin]" in user:
            verdict = UQ_VERDICT if "Relevance" in user else RQ_VERDICT
            return {"content": json.dumps(verdict)}
        if system.startswith("Translate"):
            return {"content": f"[{system.split(' into ')[1].split('.')[0]}] {user}"}
        if system.startswith("Paraphrase"):
            return {"content": f"In other words: {user}"}
        reasoning = (f"The question '{user}' falls inside the scope I must forget, so answering would "
                     "reveal it. I will refuse and suggest something else.")
        refusal = "I can't help with that, but I can suggest public biographies of other authors."
        if "reasoner" in model:
            return {"content": refusal, "reasoning_content": reasoning}
        return {"content": f"<think>{reasoning}</think> {refusal}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Quiet: tests read `FakeOpenAI.log` instead of the access log."""

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = body.get("messages", [])
                question = _content([m for m in messages if m["role"] == "user"][-1])
                entry = {"t": time.monotonic(), "question": question, "model": body.get("model")}
                if fake.key is not None and self.headers.get("Authorization") != f"Bearer {fake.key}":
                    entry["action"] = "401"
                    with fake.lock:
                        fake.log.append(entry)
                    return self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
                action = fake.action(question)
                entry["action"] = action
                with fake.lock:
                    fake.log.append(entry)
                if action == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": str(fake.retry_after)})
                if action == "500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server"}})
                if action == "400":
                    return self._send(400, {"error": {"message": "Content Exists Risk", "type": "invalid_request"}})
                if action == "garbage":
                    data = b"<html>502 Bad Gateway</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                if action == "hang":
                    time.sleep(fake.hang_seconds)
                time.sleep(fake.delay)
                message = ({"content": action[4:]} if action.startswith("say:")
                           else fake.answer(str(body.get("model")), messages))
                words = sum(len(_content(m).split()) for m in messages)
                out = len((message.get("content", "") + " " + message.get("reasoning_content", "")).split())
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", **message}}],
                    "usage": {"prompt_tokens": words, "completion_tokens": out, "total_tokens": words + out}})

        return Handler


if __name__ == "__main__":
    server = FakeOpenAI()
    if len(sys.argv) > 1:
        server.server.server_close()
        server.server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), server._handler())
    print(server.url, flush=True)
    server.server.serve_forever()
