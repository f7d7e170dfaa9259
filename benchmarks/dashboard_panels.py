"""How fast the Grafana dashboards answer on a large Postgres database.

Reads the committed dashboards (llm_monitoring/grafana/dashboards/*.json) and prepares every panel's
and template variable's SQL as Grafana would for the last 24 h, 7 d and 30 d of the data (ending at
its newest run): the panel's interval from the range and its maxDataPoints, every run filter on
"All" ('__all', or --select), the evaluator variable on its first option (the newest rule version), and the
Postgres datasource's macros. Then times each query on the database (median of --repeats runs after
one warm-up) and prints a table of panel x range in ms, flagging what takes over 500 ms.

    uv run python benchmarks/dashboard_panels.py                       # the benchmark database of app_queries.py
    uv run python benchmarks/dashboard_panels.py --database-url postgresql://user@host/db
    uv run python benchmarks/dashboard_panels.py --rebuild-daily        # first rebuild its daily tables
    uv run python benchmarks/dashboard_panels.py --make 100000         # a database of its own, dropped afterwards

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from app_queries import database_url, fill, recreate_database  # noqa: E402  (benchmarks/app_queries.py)

from llm_monitoring.database_url import normalize_url  # noqa: E402
from llm_monitoring.recompute import rebuild_every_daily_table  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.runs import run_days  # noqa: E402
from llm_monitoring_tests.conftest import drop_postgres_database  # noqa: E402
from llm_monitoring_tests.grafana_queries import Selection, panel_interval, to_postgres  # noqa: E402

DASHBOARDS = ROOT / "llm_monitoring" / "grafana" / "dashboards"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/llmmon_bench_app"
OWN_DATABASE = "llmmon_bench_dashboards"
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SLOW_MS = 500.0
# What the provisioned datasource sets as its minimum interval (timeInterval).
MIN_INTERVAL = "1m"


@dataclass(frozen=True)
class Query:
    dashboard: dict[str, Any]
    label: str
    sql: str
    panel: dict[str, Any] | None  # None for a template variable


def dashboard_queries() -> list[Query]:
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        short = dashboard["title"].removeprefix("LLM Monitoring - ")
        for variable in dashboard["templating"]["list"]:
            queries.append(Query(dashboard, f"{short}: variable ${variable['name']}", variable["query"], None))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append(Query(dashboard, f"{short}: {panel['title']}", target["rawSql"], panel))
    return queries


def newest_run(connection: psycopg.Connection) -> datetime:
    newest = connection.execute("SELECT max(run_started_at) FROM llm_logs").fetchone()[0]
    if newest is None:
        raise SystemExit("the database has no runs")
    # Grafana's range ends on a millisecond: the newest run's, rounded up so that the run is in it.
    return newest.astimezone(UTC).replace(microsecond=0) + timedelta(milliseconds=-(-newest.microsecond // 1000))


def evaluator_choice(connection: psycopg.Connection, dashboard: dict[str, Any], time_from: datetime, time_to: datetime) -> Selection:
    """Grafana's default for the evaluator variable: its first option (with none, the variable is empty)."""
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "evaluator"]
    rows = connection.execute(to_postgres(variable["query"], dashboard, {}, time_from, time_to)).fetchall()
    return Selection((rows[0][0] if rows else "",))


def timed_ms(connection: psycopg.Connection, sql: str, repeats: int) -> float:
    connection.execute(sql).fetchall()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        connection.execute(sql).fetchall()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def measure(url: str, repeats: int, ranges: dict[str, timedelta], choices: dict[str, Selection]) -> None:
    queries = dashboard_queries()
    with psycopg.connect(url, autocommit=True) as connection:
        runs = connection.execute("SELECT count(*) FROM llm_logs").fetchone()[0]
        end = newest_run(connection)
        print(f"{runs:,} runs; ranges end at the newest run, {end:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC")
        chosen = ", ".join(f"{name} = {selection.values[0]}" for name, selection in choices.items()) or "every run filter on All"
        print(f"{chosen}; median of {repeats} runs after a warm-up, in ms; * over {SLOW_MS:.0f} ms\n")
        results: dict[str, dict[str, float]] = {query.label: {} for query in queries}
        intervals: dict[str, str] = {}
        for name, span in ranges.items():
            time_from = end - span
            evaluators: dict[str, Selection] = {}
            for query in queries:
                selections = dict(choices)
                if any(v["name"] == "evaluator" for v in query.dashboard["templating"]["list"]):
                    uid = query.dashboard["uid"]
                    if uid not in evaluators:
                        evaluators[uid] = evaluator_choice(connection, query.dashboard, time_from, end)
                    selections["evaluator"] = evaluators[uid]
                interval = panel_interval(query.panel, span, MIN_INTERVAL) if query.panel else "1m"
                if query.panel and query.panel.get("maxDataPoints"):
                    intervals[name] = interval
                sql = to_postgres(query.sql, query.dashboard, selections, time_from, end, interval)
                try:
                    results[query.label][name] = timed_ms(connection, sql, repeats)
                except psycopg.Error as error:
                    print(f"{query.label} ({name}) failed: {error}\n{sql}", file=sys.stderr)
                    results[query.label][name] = float("nan")
    print("time series intervals: " + ", ".join(f"{name} -> {interval}" for name, interval in intervals.items()) + "\n")
    width = max(len(label) for label in results)
    print(f"{'query':<{width}}" + "".join(f"{name:>11}" for name in ranges))
    slow = []
    for label, figures in results.items():
        cells = []
        for name in ranges:
            ms = figures[name]
            flag = "*" if ms > SLOW_MS or ms != ms else " "
            cells.append(f"{ms:10.1f}{flag}")
            if flag == "*":
                slow.append(f"{label} ({name})")
        print(f"{label:<{width}}" + "".join(cells))
    print(f"\n{len(slow)} of {len(results) * len(ranges)} over {SLOW_MS:.0f} ms" + (": " + "; ".join(slow) if slow else ""))


# ---------------------------------------------------------------------------- a database to measure


def rebuild_daily_tables(database: Database) -> None:
    """The daily tables as the aggregates assets keep them: each day of runs rebuilt on its own (a
    day's partition)."""
    began = time.perf_counter()
    days = sorted(run_days(database))
    for day in days:
        rebuild_every_daily_table(database, [day])
    print(f"rebuilt the daily tables of {len(days)} days in {time.perf_counter() - began:.1f} s")


def make_database(server: str, runs: int) -> str:
    server = database_url(server, "postgres")
    recreate_database(server, OWN_DATABASE)
    url = database_url(server, OWN_DATABASE)
    database = Database(url)
    try:
        database.ensure_schema()
        print(f"filled {database.display_url} with {runs:,} runs in {fill(database, runs):.1f} s")
        rebuild_daily_tables(database)
    finally:
        database.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="the database to measure (its server, with --make)")
    parser.add_argument("--make", type=int, metavar="RUNS", help=f"fill a database of its own ({OWN_DATABASE}) with RUNS runs")
    parser.add_argument("--keep", action="store_true", help="with --make: do not drop that database afterwards")
    parser.add_argument("--rebuild-daily", action="store_true", help="rebuild the daily tables of the database first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranges", default=",".join(RANGES), help=f"some of {', '.join(RANGES)}")
    parser.add_argument(
        "--select", action="append", default=[], metavar="VARIABLE=VALUE", help='a run filter instead of "All", e.g. provider=openai'
    )
    args = parser.parse_args()
    ranges = {name: RANGES[name] for name in args.ranges.split(",")}
    choices = {name: Selection((value,)) for name, _, value in (choice.partition("=") for choice in args.select)}

    url = normalize_url(args.database_url)
    if args.make:
        url = make_database(url, args.make)
    elif args.rebuild_daily:
        database = Database(url)
        try:
            began = time.perf_counter()
            database.ensure_schema()  # a database of an earlier version is upgraded first
            print(f"schema in place in {time.perf_counter() - began:.1f} s")
            rebuild_daily_tables(database)
        finally:
            database.dispose()
    try:
        measure(sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), args.repeats, ranges, choices)
    finally:
        if args.make and not args.keep:
            drop_postgres_database(normalize_url(database_url(args.database_url, "postgres")), OWN_DATABASE)


if __name__ == "__main__":
    main()
