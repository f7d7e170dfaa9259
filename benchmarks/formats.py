"""Ingest throughput per log format: one file per run, JSON Lines, and OTLP JSON traces, side by side.

    uv run python benchmarks/formats.py --count 2000

The same kind of runs in three layouts, each ingested by `ingest_files` (the job's code) into a fresh
database, in this process with the configured worker processes:
- per-run files: the project's sample writer, one JSON file per run;
- JSON Lines: the same runs, one line each, in 8 files an agent would append to;
- OTLP JSON traces: runs of a real pydantic-ai agent (3 requests, 2 tool calls) traced by its own
  instrumentation and written as OTLP JSON, one ExportTraceServiceRequest a line, in 8 files.
Each figure is the median of --repeat rounds. Prints runs/s and MB/s; never asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_monitoring.config import get_settings  # noqa: E402
from llm_monitoring.ingest import ingest_files  # noqa: E402
from llm_monitoring.samples import make_run_log, write_sample_logs  # noqa: E402
from llm_monitoring.sources import LocalDirectorySource  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database  # noqa: E402

FILES_PER_LAYOUT = 8
START = datetime(2026, 11, 1, tzinfo=UTC)


def per_run_files(folder: Path, count: int) -> None:
    write_sample_logs(folder, count, seed=7, sizes_kb=(5, 30, 90))


def json_lines(folder: Path, count: int) -> None:
    rng = random.Random(7)
    handles = [(folder / f"agent-{index}.jsonl").open("wb") for index in range(FILES_PER_LAYOUT)]
    for number in range(count):
        log = make_run_log(rng, START + timedelta(seconds=number), size_kb=rng.choice((5, 30, 90)))
        handles[number % FILES_PER_LAYOUT].write(orjson.dumps(log) + b"\n")
    for handle in handles:
        handle.close()


def otlp_traces(folder: Path, count: int) -> None:
    from llm_monitoring_tests import real_writers  # pydantic-ai and the OpenTelemetry SDK: imported when used

    handles = [(folder / f"traces-{index}.jsonl").open("wb") for index in range(FILES_PER_LAYOUT)]
    for number in range(count):
        handles[number % FILES_PER_LAYOUT].write(real_writers.json_lines([real_writers.run_request(real_writers.agent_run(number))]))
    for handle in handles:
        handle.close()


LAYOUTS: dict[str, Callable[[Path, int], None]] = {
    "per-run files": per_run_files,
    "JSON Lines": json_lines,
    "OTLP JSON traces": otlp_traces,
}


def ingest_once(folder: Path, url: str) -> tuple[float, int]:
    database = Database(url)
    database.ensure_schema()
    source = LocalDirectorySource(folder, glob=get_settings().log_file_glob)
    try:
        os.sync()
        started = time.perf_counter()
        report = ingest_files(source, database)
        return time.perf_counter() - started, report.stored
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    args = parser.parse_args()
    os.environ["SETTLE_SECONDS"] = "0"
    server = args.postgres.replace("postgresql+psycopg://", "postgresql://")
    with tempfile.TemporaryDirectory(prefix="llmmon-formats-") as temp:
        work = Path(temp)
        print(f"{args.count} runs per layout, {os.cpu_count()} cores, INGEST_WORKERS={get_settings().workers}")
        for label, write in LAYOUTS.items():
            for database_kind in ("sqlite", "postgres"):
                if args.only and args.only != database_kind:
                    continue
                seconds, megabytes, stored = [], 0.0, 0
                for round_ in range(args.repeat):
                    folder = work / f"{label}-{database_kind}-{round_}".replace(" ", "_")
                    folder.mkdir()
                    write(folder, args.count)
                    megabytes = sum(path.stat().st_size for path in folder.iterdir()) / 1e6
                    if database_kind == "sqlite":
                        elapsed, stored = ingest_once(folder, f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}")
                    else:
                        name, url = create_postgres_database(server)
                        try:
                            elapsed, stored = ingest_once(folder, url)
                        finally:
                            drop_postgres_database(server, name)
                    seconds.append(elapsed)
                took = median(seconds)
                print(
                    f"  {label:<17} {database_kind:<8} {stored:6d} runs  {megabytes:7.1f} MB  {took:6.2f} s  "
                    f"{stored / took:7.0f} runs/s  {megabytes / took:6.1f} MB/s  (rounds {min(seconds):.2f}-{max(seconds):.2f} s)"
                )


if __name__ == "__main__":
    main()
