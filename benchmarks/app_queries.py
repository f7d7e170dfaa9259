"""How fast the review app answers on a large Postgres database.

Fills a Postgres database with runs (100,000 by default, with their checks and some feedback) using
COPY, then times what the app does: the first page of the list (totals, filter options, one page,
the newest run's detail, checks and feedback) and a filter change, both through the same query
functions the app calls and through Streamlit's AppTest rendering the whole page.

    uv run python benchmarks/app_queries.py                  # 100,000 runs on TEST_DATABASE_URL's server
    uv run python benchmarks/app_queries.py --runs 20000 --reuse

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from llm_monitoring.core.evaluation import EVALUATOR_VERSION  # noqa: E402
from llm_monitoring.database_url import normalize_url  # noqa: E402
from llm_monitoring.ingest import run_from_bytes  # noqa: E402
from llm_monitoring.samples import PROFILES, make_run_log  # noqa: E402
from llm_monitoring.storage.bulk import CHECK_COLUMNS, LOG_COLUMNS, RunToStore, check_values  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.errors import DatabaseUnavailable  # noqa: E402
from llm_monitoring.storage.review import RunFilters, filter_options, list_runs, run_checks, run_detail, run_feedback, run_totals  # noqa: E402
from llm_monitoring.storage.runs import count_rows  # noqa: E402
from llm_monitoring.storage.schema import llm_logs  # noqa: E402
from llm_monitoring_tests.conftest import drop_postgres_database  # noqa: E402

APP = ROOT / "llm_monitoring" / "app.py"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE = "llmmon_bench_app"
TEMPLATES = 400
START = datetime(2026, 1, 1, tzinfo=UTC)
SPREAD = timedelta(days=90)
FEEDBACK_SHARE = 0.05


def database_url(server: str, name: str) -> str:
    return sa.make_url(normalize_url(server)).set(database=name).render_as_string(hide_password=False)


def recreate_database(server: str, name: str) -> None:
    drop_postgres_database(normalize_url(server), name)
    engine = sa.create_engine(normalize_url(server), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()


def templates(count: int) -> list[RunToStore]:
    """Distinct parsed, priced and evaluated runs; the bulk rows reuse them with their own times."""
    rng = random.Random(42)
    runs = []
    for index in range(count):
        log = make_run_log(rng, START, size_kb=5, profile=PROFILES[index % len(PROFILES)])
        runs.append(run_from_bytes(json.dumps(log).encode(), ""))
    return runs


def fill(database: Database, runs: int, *, start: datetime = START, spread: timedelta = SPREAD) -> float:
    """COPY `runs` runs started over [start, start + spread), their checks and some feedback; returns
    the seconds it took."""
    began = time.perf_counter()
    models = templates(TEMPLATES)
    rng = random.Random(7)
    now = datetime.now(UTC)
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY llm_logs ({', '.join(LOG_COLUMNS)}) FROM STDIN") as copy:
            for log_id in range(1, runs + 1):
                model = models[log_id % len(models)]
                started = start + spread * ((log_id - 1) / runs) + timedelta(seconds=rng.randint(0, 59))
                row = model.log_row()
                row.update(
                    filepath=f"logs/run_{log_id:06d}.json",
                    content_hash=hashlib.sha256(str(log_id).encode()).hexdigest(),
                    run_started_at=started,
                    run_finished_at=started + timedelta(seconds=row["duration_seconds"] or 0),
                    created_at=now,
                )
                copy.write_row([log_id, *(row[name] for name in LOG_COLUMNS[1:])])
        with cursor.copy(f"COPY eval_checks ({', '.join(CHECK_COLUMNS)}) FROM STDIN") as copy:
            for log_id in range(1, runs + 1):
                model = models[log_id % len(models)]
                for values in check_values(log_id, model.checks, EVALUATOR_VERSION, now):
                    copy.write_row(values)
        with cursor.copy("COPY feedback (log_id, is_good, comments, reviewer, created_at) FROM STDIN") as copy:
            for log_id in range(1, runs + 1):
                if rng.random() < FEEDBACK_SHARE:
                    copy.write_row([log_id, rng.random() < 0.65, "bulk feedback", rng.choice(["ana", "bo", None]), now])
        cursor.execute("SELECT setval(pg_get_serial_sequence('llm_logs', 'id'), (SELECT max(id) FROM llm_logs))")
        raw.commit()
        # Plans depend on statistics; autovacuum would gather them soon after a load like this.
        raw.driver_connection.autocommit = True
        cursor.execute("VACUUM ANALYZE llm_logs")
        cursor.execute("VACUUM ANALYZE eval_checks")
        cursor.execute("VACUUM ANALYZE feedback")
    finally:
        raw.close()
    return time.perf_counter() - began


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median, max) wall time in ms over `repeats` calls after one warm-up."""
    action()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def app_rerun(database: Database, filters: RunFilters, page_size: int = 100, offset: int = 0) -> None:
    """The queries of one rerun of the app, in its order (filter options are cached for a minute there)."""
    totals = run_totals(database, filters)
    rows = list_runs(database, filters, limit=page_size, offset=offset)
    if rows and totals.runs:
        log_id = rows[0]["id"]
        run_detail(database, log_id)
        run_checks(database, log_id)
        run_feedback(database, log_id)


def report(label: str, figures: tuple[float, float]) -> None:
    median, worst = figures
    print(f"  {label:<58} median {median:7.1f} ms   max {worst:7.1f} ms")


def bench_queries(database: Database, repeats: int) -> None:
    options = filter_options(database)
    provider = options.providers[0]
    end = START + SPREAD
    cases: list[tuple[str, RunFilters, int]] = [
        ("first page (no filter, 100 rows)", RunFilters(), 0),
        (f"provider = {provider}", RunFilters(provider=provider), 0),
        (f"model = {options.models[-1]}", RunFilters(model=options.models[-1]), 0),
        ("agent + last 7 days", RunFilters(agent=options.agents[0], started_from=end - timedelta(days=7)), 0),
        ("check tool_call_search failed", RunFilters(check_name="tool_call_search", check_outcome="failed"), 0),
        ("check answer_clear not applicable", RunFilters(check_name="answer_clear", check_outcome="not applicable"), 0),
        ("with 👎 feedback", RunFilters(feedback_is_good=False), 0),
        ("without feedback", RunFilters(has_feedback=False), 0),
        ("text search 'kubernetes'", RunFilters(text="kubernetes"), 0),
        ("text search with no match", RunFilters(text="zebra crossing"), 0),
        ("page 500 (offset 49,900)", RunFilters(), 49_900),
    ]
    print(f"\nQueries of one app rerun (totals + page of 100 + detail, checks, feedback of the first run), {repeats} repeats:")
    report("filter options (sidebar; cached 60 s in the app)", timed(lambda: filter_options(database), repeats))
    for label, filters, offset in cases:
        report(label, timed(lambda filters=filters, offset=offset: app_rerun(database, filters, 100, offset), repeats))


def bench_apptest(url: str, repeats: int) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    print(f"\nWhole page rendered by Streamlit's AppTest (script run, queries, elements), {repeats} repeats:")
    warm = AppTest.from_file(str(APP), default_timeout=120)
    began = time.perf_counter()
    warm.run()
    print(f"  {'cold first load (imports, connection pool, caches)':<58} {1000 * (time.perf_counter() - began):7.1f} ms")
    if warm.exception:
        print("  the app raised:", [item.value for item in warm.exception])
        return

    def first_load() -> AppTest:
        app = AppTest.from_file(str(APP), default_timeout=120)
        app.run()
        return app

    report("first page, new session", timed(first_load, repeats))
    app = first_load()
    providers = [option for option in app.selectbox(key="provider").options if option != "All"]
    samples = []
    for index in range(repeats + 1):
        began = time.perf_counter()
        app.selectbox(key="provider").select(providers[index % len(providers)]).run()
        if index:
            samples.append(1000 * (time.perf_counter() - began))
    report("filter change: provider", (statistics.median(samples), max(samples)))
    samples = []
    for index in range(repeats + 1):
        began = time.perf_counter()
        app.selectbox(key="check").select("tool_call_search").run()
        app_ms = 1000 * (time.perf_counter() - began)
        app.selectbox(key="check").select("All").run()
        if index:
            samples.append(app_ms)
    report("filter change: check tool_call_search failed", (statistics.median(samples), max(samples)))
    samples = []
    for index in range(repeats + 1):
        began = time.perf_counter()
        app.text_input(key="search").input(f"docker {index}" if index % 2 else "docker").run()
        if index:
            samples.append(1000 * (time.perf_counter() - began))
    report("filter change: text search", (statistics.median(samples), max(samples)))
    rows = len(app.dataframe[0].value) if app.dataframe else 0
    print(f"  (last page shown had {rows} rows; exceptions: {len(app.exception)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER, help="Postgres server URL")
    parser.add_argument("--database", default=BENCH_DATABASE, help="database to (re)create on that server")
    parser.add_argument("--reuse", action="store_true", help="keep the database if it already holds --runs runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="do not drop the database afterwards")
    args = parser.parse_args()

    url = database_url(args.server, args.database)
    database: Database | None = None
    if args.reuse:
        try:
            database = Database(url)
            if count_rows(database, llm_logs) != args.runs:
                database.dispose()
                database = None
        except (DatabaseUnavailable, sa.exc.DBAPIError) as error:
            print(f"not reusing {args.database}: {type(error).__name__}")
            database = None
    if database is None:
        recreate_database(args.server, args.database)
        database = Database(url)
        database.ensure_schema()
        seconds = fill(database, args.runs)
        print(f"Filled {database.display_url} with {args.runs:,} runs in {seconds:.1f} s")
    with database.connect() as connection:
        size = connection.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()
    print(f"Database {database.display_url}: {count_rows(database, llm_logs):,} runs, {size}")
    try:
        bench_queries(database, args.repeats)
        bench_apptest(url, args.repeats)
    finally:
        database.dispose()
        if not args.keep:
            drop_postgres_database(normalize_url(args.server), args.database)


if __name__ == "__main__":
    main()
