"""Backfill times over a month of history: re-evaluate, re-price, aggregate and judge N runs spread over D days.

    uv run python benchmarks/history_backfill.py --runs 10000 --days 30

Stores the runs (sample logs of 5, 30 and 90 KB, parsed, priced and evaluated as the ingest does)
in a fresh Postgres database on TEST_DATABASE_URL's server (dropped afterwards), then runs each
backfill job once over the whole range, as one Dagster run, the way a UI backfill does, then the gates over
those days (quality_gates_job, as the aggregates sensor requests it after a backfill). Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_monitoring.defs import keys
from llm_monitoring.defs.quality.jobs import gates_run_config
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.samples import PROFILES, make_run_log
from llm_monitoring.storage.bulk import RunToStore, store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import eval_checks
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database, server_url
from llm_monitoring_tests.history_data import run_job

FIRST_DAY = date(2026, 1, 1)


def store(database: Database, runs: int, days: int, sizes_kb: tuple[int, ...]) -> None:
    rng = random.Random(0)
    batch: list[RunToStore] = []
    spread = timedelta(days=days) / runs
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC)
    for index in range(runs):
        log = make_run_log(rng, start + spread * index, size_kb=sizes_kb[index % len(sizes_kb)], profile=PROFILES[index % len(PROFILES)])
        batch.append(run_from_bytes(json.dumps(log).encode(), f"logs/run_{index:06d}.json"))
        if len(batch) == 500:
            store_runs(database, batch)
            batch = []
    store_runs(database, batch)


def judge(instance: dg.DagsterInstance, days: int) -> float:
    from llm_monitoring.definitions import defs

    started = time.perf_counter()
    run_config = gates_run_config([FIRST_DAY + timedelta(days=offset) for offset in range(days)])
    result = defs.resolve_job_def(keys.GATES_JOB).execute_in_process(instance=instance, run_config=run_config)
    assert result.success
    return time.perf_counter() - started


def backfill(job_name: str, instance: dg.DagsterInstance, days: int) -> float:
    last = FIRST_DAY + timedelta(days=days - 1)
    started = time.perf_counter()
    result = run_job(job_name, instance, first=FIRST_DAY.isoformat(), last=last.isoformat())
    elapsed = time.perf_counter() - started
    assert result.success, job_name
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sizes-kb", default="5,30,90", help="log sizes to cycle through, in KB")
    args = parser.parse_args()
    server = server_url()
    name, url = create_postgres_database(server)
    os.environ["DATABASE_URL"] = url
    try:
        database = Database(url)
        database.ensure_schema()
        started = time.perf_counter()
        store(database, args.runs, args.days, tuple(int(size) for size in args.sizes_kb.split(",")))
        print(f"stored {args.runs} runs over {args.days} days in {time.perf_counter() - started:.1f}s")
        with dg.instance_for_test() as instance:
            for job_name in (keys.REEVALUATE_JOB, keys.REPRICE_JOB, keys.AGGREGATES_JOB):
                print(f"{job_name:<22} {args.days}-day backfill, one run: {backfill(job_name, instance, args.days):6.1f}s")
            print(f"{keys.GATES_JOB:<22} the five gates over the {args.days} days: {judge(instance, args.days):6.1f}s")
        print(f"eval_checks rows: {count_rows(database, eval_checks)} (= {args.runs} x 7: re-evaluation replaced, never added)")
        database.dispose()
    finally:
        drop_postgres_database(server, name)


if __name__ == "__main__":
    main()
