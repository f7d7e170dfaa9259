"""A local OpenAI-compatible server for LLM judge tests and benchmarks: POST /v1/chat/completions answers
with a verdict as the tool call pydantic-ai's OpenAI chat model expects for structured output.

It listens on 127.0.0.1 only, on a free port, in a thread of the test's process. Latency, 429
refusals with Retry-After and 5xx errors are injected; it counts the requests it received and the
most it was answering at once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Verdict = dict[str, Any]


def default_verdict(prompt: str) -> Verdict:
    """A verdict that depends on the run only: the same prompt always gets the same one."""
    passed = sum(prompt.encode()) % 3 != 0
    return {"passed": passed, "score": 0.9 if passed else 0.2, "reason": f"fake judge: {'meets' if passed else 'misses'} the rubric"}


@dataclass
class FakeJudgeServer:
    latency: float = 0.0  # seconds each answer takes
    rate_limited: int = 0  # the first N requests get 429 with Retry-After
    retry_after: float = 0.1
    server_errors: int = 0  # then the next N get 503
    verdict: Callable[[str], Verdict] = default_verdict
    completion_tokens: int = 30
    requests: int = 0
    refused: int = 0
    max_in_flight: int = 0
    prompts: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)  # the system messages, one entry per request
    models: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    first_request_at: float | None = None  # time.monotonic() of the first request and of the last answer
    last_answer_at: float | None = None
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self.requests += 1
            number = self.requests
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            if number <= self.rate_limited:
                with self._lock:
                    self.refused += 1
                error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
                # As OpenAI does: whole seconds in Retry-After, the exact wait in retry-after-ms.
                headers = {"Retry-After": str(math.ceil(self.retry_after)), "retry-after-ms": str(round(self.retry_after * 1000))}
                return 429, headers, error
            if number <= self.rate_limited + self.server_errors:
                with self._lock:
                    self.refused += 1
                return 503, {}, {"error": {"message": "overloaded, try again", "type": "server_error", "code": None}}
            prompt = "\n".join(str(message.get("content") or "") for message in body["messages"] if message["role"] == "user")
            system = "\n".join(
                str(message.get("content") or "") for message in body["messages"] if message["role"] in ("system", "developer")
            )
            with self._lock:
                self.prompts.append(prompt)
                self.instructions.append(system)
                self.models.append(body["model"])
            tool = body["tools"][0]["function"]["name"]
            return 200, {}, self.completion(body["model"], tool, prompt)
        finally:
            with self._lock:
                self._in_flight -= 1
                self.last_answer_at = time.monotonic()

    def completion(self, model: str, tool: str, prompt: str) -> dict[str, Any]:
        prompt_tokens = 150 + len(prompt) // 4
        return {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": json.dumps(self.verdict(prompt))}}
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": prompt_tokens + self.completion_tokens,
            },
        }

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "refused": self.refused,
                "max_in_flight": self.max_in_flight,
                "first_request_at": self.first_request_at,
                "last_answer_at": self.last_answer_at,
            }

    @contextmanager
    def running(self) -> Iterator[FakeJudgeServer]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects

            def do_GET(self) -> None:
                # GET /stats: the counters, for a server run in its own process (see main).
                data = json.dumps(fake.stats()).encode()
                self.send_response(200 if self.path == "/stats" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.authorizations.append(self.headers.get("Authorization", ""))
                if not self.path.endswith("/chat/completions"):
                    status, headers, payload = 404, {}, {"error": {"message": f"no route {self.path}"}}
                else:
                    status, headers, payload = fake.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the counters say what happened

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # the default backlog of 5 drops connections a burst of clients opens at once

        server = Server(("127.0.0.1", 0), Handler)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="fake-judge-server", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def judges_yaml(base_url: str, *, name: str = "helpfulness", concurrency: int = 4, model: str = "openai:gpt-4o-mini", **extra: Any) -> str:
    """judges.yaml with one judge of the fake server."""
    lines = [
        "judges:",
        f"  - name: {name}",
        f"    model: {model}",
        f"    base_url: {base_url}",
        f"    concurrency: {concurrency}",
        "    rubric: |",
        "      Is this answer helpful for the question?",
        "      Question: {prompt}",
        "      Answer: {answer}",
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    """`python -m llm_monitoring_tests.judge_server --latency 0.2`: the server in its own process (a benchmark
    measures the client without the server's threads in its interpreter). Prints its base URL, serves
    until stdin closes; counters at GET /stats, times on this machine's monotonic clock."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FakeJudgeServer(latency=args.latency).running() as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
