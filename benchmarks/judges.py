"""LLM judges' throughput: N stored runs judged against a local OpenAI-compatible server that answers each
call after a fixed latency, at a judge's concurrency.

    uv run python benchmarks/judges.py                      # 1,000 runs, 200 ms a call, concurrency 16
    uv run python benchmarks/judges.py --runs 2000 --latency 0.5 --concurrency 32

With every call taking L seconds and C calls in flight, judging N runs cannot take less than N * L / C
(12.5 s for the defaults). Prints, for the judging service (llm_monitoring.judging.judge_window) and
for the command (`llm-monitoring judge run`, the Dagster job in this process): the wall time, the
start-up before the first request, and the ratio to that ideal plus start-up. Real HTTP through
pydantic-ai's OpenAI client on 127.0.0.1, a fresh SQLite database; prints, never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_monitoring.judging import judge_window, load_judges
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import judge_calls
from llm_monitoring_tests.history_data import store_days
from llm_monitoring_tests.judge_server import FakeJudgeServer, judges_yaml

FIRST_DAY = date(2026, 1, 5)
PER_DAY = 200  # one run every 7 minutes from 09:00 fits 200 runs in a day


def store(database: Database, runs: int) -> tuple[datetime, datetime]:
    days = -(-runs // PER_DAY)
    for offset in range(days):
        store_days(database, FIRST_DAY + timedelta(days=offset), 1, min(PER_DAY, runs - offset * PER_DAY), seed=offset)
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=days)


def line(name: str, wall: float, server: FakeJudgeServer, started: float, ideal: float) -> str:
    startup = (server.first_request_at or started) - started
    judging = (server.last_answer_at or started) - (server.first_request_at or started)
    return (
        f"{name:<8} {wall:7.2f} s wall = {startup:5.2f} s start-up + {judging:6.2f} s judging + {wall - startup - judging:4.2f} s after; "
        f"ideal {ideal:.1f} s + start-up: {wall / (ideal + startup):.3f}x; judging alone {judging / ideal:.3f}x; "
        f"{server.requests} requests, at most {server.max_in_flight} in flight"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per call")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", choices=("service", "command"), help="measure one path only")
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
        for path in ("service", "command"):
            if args.only not in (None, path):
                continue
            with database.transaction() as connection:  # each path judges every run afresh
                connection.exec_driver_sql("DELETE FROM judge_calls")
                connection.exec_driver_sql("DELETE FROM eval_checks WHERE evaluator_version LIKE 'judge:%'")
            with FakeJudgeServer(latency=args.latency).running() as server:
                Path(os.environ["JUDGES_FILE"]).write_text(judges_yaml(server.base_url, concurrency=args.concurrency), encoding="utf-8")
                started = time.monotonic()
                if path == "service":
                    (report,) = judge_window(database, load_judges(), start, end, log=lambda text: None)
                    assert report.judged == args.runs, report.line()
                else:
                    from llm_monitoring import cli

                    assert cli.main(["judge", "run", "--from", str(start.date()), "--to", str((end - timedelta(days=1)).date())]) == 0
                wall = time.monotonic() - started
            assert count_rows(database, judge_calls) == args.runs
            print(line(path, wall, server, started, ideal))
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
