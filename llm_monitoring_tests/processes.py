"""Helpers for tests that start real servers: free ports, polling, stopping process groups, GraphQL, a webhook receiver."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first truthy result of `condition`, polled every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


def stop_group(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """Stop a process started in its own session, with everything it started: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)


def graphql(port: int, query: str, timeout: float = 30, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole response of a Dagster webserver's GraphQL endpoint to `query`."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """A webhook endpoint on 127.0.0.1 that keeps every JSON body it accepts, with its arrival time.

    `refuse(n, status)` makes it answer the next n requests with that status (a webhook that is down);
    refused bodies are counted in `refused`, not kept. Use as a context manager: it serves in a thread."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.refused = 0
        self._refusals: list[int] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _WebhookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/T000/B000/secret-token"

    def refuse(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._refusals += [status] * count

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [body for _, body in self.received if kind is None or body.get("kind") == kind]

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server._lock:
            status = self.server._refusals.pop(0) if self.server._refusals else 200
            if status == 200:
                self.server.received.append((time.time(), json.loads(body or b"{}")))
            else:
                self.server.refused += 1
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"unavailable")

    def log_message(self, format: str, *args: Any) -> None:  # no line per request on stderr
        pass
