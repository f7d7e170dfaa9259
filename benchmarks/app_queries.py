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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from llm_monitoring.app_runs import Pager, count_totals, fetch_page  # noqa: E402
from llm_monitoring.core.evaluation import EVALUATOR_VERSION  # noqa: E402
from llm_monitoring.database_url import normalize_url  # noqa: E402
from llm_monitoring.ingest import run_from_bytes  # noqa: E402
from llm_monitoring.samples import PROFILES, make_run_log  # noqa: E402
from llm_monitoring.storage.bulk import CHECK_COLUMNS, LOG_COLUMNS, RunToStore, check_values, insert_rows  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.errors import DatabaseUnavailable  # noqa: E402
from llm_monitoring.storage.review import PageKey, RunFilters, filter_options, list_runs, page_key  # noqa: E402
from llm_monitoring.storage.review_totals import run_totals  # noqa: E402
from llm_monitoring.storage.rollups import backfill_summaries  # noqa: E402
from llm_monitoring.storage.run_detail import run_checks, run_detail, run_feedback  # noqa: E402
from llm_monitoring.storage.runs import count_rows  # noqa: E402
from llm_monitoring.storage.schema import check_verdicts, eval_checks, feedback, llm_logs, run_day_totals, run_search  # noqa: E402
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


def rare_words(log_id: int) -> str:
    """Words in fewer runs than any of the sample writer's (whose rarest is in 7 % of runs): "quasar" in
    0.5 % of the runs, "nebula" in 0.05 %, for searches that match few runs."""
    return (" quasar" if log_id % 200 == 0 else "") + (" nebula" if log_id % 2000 == 0 else "")


def log_rows(models: list[RunToStore], runs: int, now: datetime, start: datetime, spread: timedelta) -> Iterator[tuple[Any, ...]]:
    """llm_logs rows in LOG_COLUMNS order: the templates with their own ids, times over [start, start +
    spread) and hashes."""
    rng = random.Random(7)
    for log_id in range(1, runs + 1):
        model = models[log_id % len(models)]
        started = start + spread * ((log_id - 1) / runs) + timedelta(seconds=rng.randint(0, 59))
        row = model.log_row()
        row.update(
            user_prompt=(row["user_prompt"] or "") + rare_words(log_id),
            filepath=f"logs/run_{log_id:06d}.json",
            content_hash=hashlib.sha256(str(log_id).encode()).hexdigest(),
            run_started_at=started,
            run_finished_at=started + timedelta(seconds=row["duration_seconds"] or 0),
            created_at=now,
        )
        yield (log_id, *(row[name] for name in LOG_COLUMNS[1:]))


def check_rows(models: list[RunToStore], runs: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    for log_id in range(1, runs + 1):
        yield from check_values(log_id, models[log_id % len(models)].checks, EVALUATOR_VERSION, now)


FEEDBACK_COLUMNS = ("log_id", "is_good", "comments", "reviewer", "created_at")


def feedback_rows(runs: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(11)
    for log_id in range(1, runs + 1):
        if rng.random() < FEEDBACK_SHARE:
            yield (log_id, rng.random() < 0.65, "bulk feedback", rng.choice(["ana", "bo", None]), now)


def fill(database: Database, runs: int, *, start: datetime = START, spread: timedelta = SPREAD) -> float:
    """Load `runs` runs started over [start, start + spread), their checks and some feedback (COPY on
    Postgres, batches on SQLite), then fill the summaries as an upgrade does (the load bypasses the
    writers that keep them); returns seconds."""
    began = time.perf_counter()
    models, now = templates(TEMPLATES), datetime.now(UTC)
    tables = (
        (llm_logs, LOG_COLUMNS, log_rows(models, runs, now, start, spread)),
        (eval_checks, CHECK_COLUMNS, check_rows(models, runs, now)),
        (feedback, FEEDBACK_COLUMNS, feedback_rows(runs, now)),
    )
    if database.dialect == "postgresql":
        raw = database.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for table, columns, rows in tables:
                with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cursor.execute("SELECT setval(pg_get_serial_sequence('llm_logs', 'id'), (SELECT max(id) FROM llm_logs))")
            raw.commit()
        finally:
            raw.close()
    else:
        for table, columns, rows in tables:
            for batch in _batches(rows, 5_000):
                with database.transaction() as connection:
                    insert_rows(connection, table, columns, batch)
    with database.transaction() as connection:
        backfill_summaries(connection, {"run_day_totals", "check_verdicts", "run_search"})
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # Plans depend on statistics; autovacuum (or SQLite's optimize) would gather them soon after a load like this.
        if database.dialect == "postgresql":
            for table in (llm_logs, eval_checks, feedback, check_verdicts, run_day_totals, run_search):
                connection.exec_driver_sql(f"VACUUM ANALYZE {table.name}")
        else:
            connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - began


def _batches(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median, max) wall time in ms over `repeats` calls after one warm-up."""
    action()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def app_rerun(database: Database, filters: RunFilters, page_size: int = 100, after: PageKey | None = None) -> None:
    """The queries of one rerun of the app, through its own functions and in its order (filter options
    are cached for a minute there)."""
    pager, rows, has_older = fetch_page(database, filters, page_size, Pager("benchmark", 1 if after is None else 2, after=after))
    count_totals(database, filters, count_all=False, whole_list=rows if pager.number == 1 and not has_older else None)
    if rows:
        log_id = rows[0]["id"]
        run_detail(database, log_id)
        run_checks(database, log_id)
        run_feedback(database, log_id)


def report(label: str, figures: tuple[float, float]) -> None:
    median, worst = figures
    print(f"  {label:<58} median {median:7.1f} ms   max {worst:7.1f} ms")


def bench_queries(database: Database, repeats: int) -> None:
    runs = count_rows(database, llm_logs)
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
        ("text search 'quasar' (0.5 % of runs)", RunFilters(text="quasar"), 0),
        ("text search 'nebula' (0.05 % of runs)", RunFilters(text="nebula"), 0),
        ("text search with no match", RunFilters(text="zebra crossing"), 0),
        ("text search 'kubernetes', counted on request", RunFilters(text="kubernetes"), -1),
        *(
            (f"page {deep // 100 + 1:,} (after run {deep:,})", RunFilters(), deep)
            for deep in (runs // 20 // 100 * 100, runs * 9 // 10 // 100 * 100)
        ),
        ("check tool_call_search failed, page 100", RunFilters(check_name="tool_call_search", check_outcome="failed"), 9_900),
    ]
    print(f"\nQueries of one app rerun (totals + page of 100 + detail, checks, feedback of the first run), {repeats} repeats:")
    report("filter options (sidebar; cached 60 s in the app)", timed(lambda: filter_options(database), repeats))
    for label, filters, position in cases:
        if position < 0:  # the "Count all matching runs" button
            report(label, timed(lambda filters=filters: run_totals(database, filters, cap=None), 1))
            continue
        after = key_at(database, filters, position)
        report(label, timed(lambda filters=filters, after=after: app_rerun(database, filters, 100, after), repeats))


def key_at(database: Database, filters: RunFilters, position: int) -> PageKey | None:
    """The PageKey of the run at `position` of the list (the app gets there by pressing "Older"), found
    here page by page of 10,000, untimed."""
    after = None
    while position > 0:
        rows = list_runs(database, filters, limit=min(position, 10_000), after=after)
        if not rows:
            return after
        after, position = page_key(rows[-1]), position - len(rows)
    return after


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
    app.text_input(key="search").input("").run()
    samples = []
    for index in range(repeats + 1):
        began = time.perf_counter()
        app.button(key="page_older").click().run()
        if index:
            samples.append(1000 * (time.perf_counter() - began))
    report("older page (pager)", (statistics.median(samples), max(samples)))
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
    parser.add_argument("--only", choices=["queries", "apptest"], help="run one half of the benchmark")
    parser.add_argument("--sqlite", type=Path, help="measure a SQLite file here instead of Postgres")
    args = parser.parse_args()

    url = f"sqlite:///{args.sqlite}" if args.sqlite else database_url(args.server, args.database)
    database: Database | None = None
    if args.reuse:
        try:
            database = Database(url)
            if count_rows(database, llm_logs) != args.runs:
                database.dispose()
                database = None
            else:
                began = time.perf_counter()
                database.ensure_schema()  # a database of an earlier version is upgraded, as the app would
                print(f"schema in place in {time.perf_counter() - began:.1f} s")
        except (DatabaseUnavailable, sa.exc.DBAPIError) as error:
            print(f"not reusing {args.database}: {type(error).__name__}")
            database = None
    if database is None:
        if args.sqlite:
            args.sqlite.unlink(missing_ok=True)
        else:
            recreate_database(args.server, args.database)
        database = Database(url)
        database.ensure_schema()
        seconds = fill(database, args.runs)
        print(f"Filled {database.display_url} with {args.runs:,} runs in {seconds:.1f} s")
    if args.sqlite:
        size = f"{args.sqlite.stat().st_size / 2**20:,.0f} MB"
    else:
        with database.connect() as connection:
            size = connection.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()
    print(f"Database {database.display_url}: {count_rows(database, llm_logs):,} runs, {size}")
    try:
        if args.only != "apptest":
            bench_queries(database, args.repeats)
        if args.only != "queries":
            bench_apptest(url, args.repeats)
    finally:
        database.dispose()
        if args.sqlite and not args.keep:
            args.sqlite.unlink(missing_ok=True)
        elif not args.keep:
            drop_postgres_database(normalize_url(args.server), args.database)


if __name__ == "__main__":
    main()
