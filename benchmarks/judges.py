"""LLM judges' throughput: N stored runs judged against a local OpenAI-compatible server that answers each
call after a fixed latency, at a judge's concurrency.

    uv run python benchmarks/judges.py                      # 1,000 runs, 200 ms a call, concurrency 16
    uv run python benchmarks/judges.py --runs 2000 --latency 0.5 --concurrency 32

With every call taking L seconds and C calls in flight, judging N runs cannot take less than N * L / C
(12.5 s for the defaults). Prints, for the judging service (llm_monitoring.judging.judge_window) and
for the command (`llm-monitoring judge run`, the Dagster job in this process): the wall time, the
start-up before the first request, and the ratio to that ideal plus start-up; and as a floor, the
same number of calls sent by a bare HTTP client (httpx) at the same concurrency, which measures
the test server's own overhead. Real HTTP through
pydantic-ai's OpenAI client on 127.0.0.1 to the test server (llm_monitoring_tests/judge_server.py) in
its own process, as a model server is (`--server-in-process` runs it in threads of this process,
where it shares the interpreter's lock with the client); a fresh SQLite database. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_monitoring.judging import judge_window, load_judges
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import judge_calls
from llm_monitoring_tests.history_data import store_days
from llm_monitoring_tests.judge_server import FakeJudgeServer, judges_yaml

FIRST_DAY = date(2026, 1, 5)
PER_DAY = 100  # one run every 7 minutes from 09:00: 100 runs end before midnight


def store(database: Database, runs: int) -> tuple[datetime, datetime]:
    days = -(-runs // PER_DAY)
    for offset in range(days):
        store_days(database, FIRST_DAY + timedelta(days=offset), 1, min(PER_DAY, runs - offset * PER_DAY), seed=offset)
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=days)


@contextmanager
def judge_server(latency: float, in_process: bool) -> Iterator[tuple[str, Any]]:
    """The server's base URL and a function returning its counters."""
    if in_process:
        with FakeJudgeServer(latency=latency).running() as server:
            yield server.base_url, server.stats
        return
    command = [sys.executable, "-m", "llm_monitoring_tests.judge_server", "--latency", str(latency)]
    root = Path(__file__).resolve().parents[1]
    with subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
        base_url = process.stdout.readline().strip()
        stats_url = base_url.removesuffix("/v1") + "/stats"
        try:
            yield base_url, lambda: json.loads(urllib.request.urlopen(stats_url, timeout=10).read())
        finally:
            process.stdin.close()  # the server stops when its stdin closes
            process.wait(timeout=30)


def bare_client(base_url: str, calls: int, concurrency: int) -> None:
    """The same calls without pydantic-ai, the database or pricing: what the server allows at best."""
    import asyncio

    import httpx

    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Question: what is it?\nAnswer: " + "word " * 300}],
        "tools": [{"type": "function", "function": {"name": "final_result", "parameters": {"type": "object"}}}],
    }

    async def send_all() -> None:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

            async def one() -> None:
                async with limit:
                    (await client.post("/chat/completions", json=body)).raise_for_status()

            await asyncio.gather(*(one() for _ in range(calls)))

    asyncio.run(send_all())


def line(name: str, wall: float, stats: dict[str, Any], started: float, ideal: float) -> str:
    first, last = stats["first_request_at"] or started, stats["last_answer_at"] or started
    startup, judging = first - started, last - first
    return (
        f"{name:<8} {wall:7.2f} s wall = {startup:5.2f} s start-up + {judging:6.2f} s judging + {wall - startup - judging:4.2f} s after; "
        f"ideal {ideal:.1f} s + start-up: {wall / (ideal + startup):.3f}x; judging alone {judging / ideal:.3f}x; "
        f"{stats['requests']} requests, at most {stats['max_in_flight']} in flight"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per call")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", choices=("bare", "service", "command"), help="measure one path only")
    parser.add_argument("--server-in-process", action="store_true", help="run the server in threads of this process")
    args = parser.parse_args()
    ideal = args.runs * args.latency / args.concurrency
    print(f"{args.runs} runs, {args.latency * 1000:.0f} ms a call, concurrency {args.concurrency}: ideal {ideal:.2f} s plus start-up")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'monitoring.db'}"
        os.environ["DATABASE_URL"] = url
        os.environ["JUDGES_FILE"] = str(Path(folder) / "judges.yaml")
        os.environ.pop("DAGSTER_HOME", None)
        database = Database(url)
        database.ensure_schema()
        start, end = store(database, args.runs)
        for path in ("bare", "service", "command"):
            if args.only not in (None, path):
                continue
            with database.transaction() as connection:  # each path judges every run afresh
                connection.exec_driver_sql("DELETE FROM judge_calls")
                connection.exec_driver_sql("DELETE FROM eval_checks WHERE evaluator_version LIKE 'judge:%'")
            with judge_server(args.latency, args.server_in_process) as (base_url, stats):
                Path(os.environ["JUDGES_FILE"]).write_text(judges_yaml(base_url, concurrency=args.concurrency), encoding="utf-8")
                started, cpu = time.monotonic(), time.process_time()
                if path == "bare":
                    bare_client(base_url, args.runs, args.concurrency)
                elif path == "service":
                    (report,) = judge_window(database, load_judges(), start, end, log=lambda text: None)
                    assert report.judged == args.runs, report.line()
                else:
                    from llm_monitoring import cli

                    assert cli.main(["judge", "run", "--from", str(start.date()), "--to", str((end - timedelta(days=1)).date())]) == 0
                wall, cpu = time.monotonic() - started, time.process_time() - cpu
                counters = stats()
            assert path == "bare" or count_rows(database, judge_calls) == args.runs
            print(line(path, wall, counters, started, ideal) + f"; {cpu:.1f} s CPU in this process")
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
