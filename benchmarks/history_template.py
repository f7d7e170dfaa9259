"""Postgres template databases holding a team's history, for benchmarks that need a large database.

A template holds `runs` runs spread evenly over the `days` days before `first_new_day`, with their
checks, some feedback (benchmarks/app_queries.fill), one processed_files row per run (each run came
from a file the ingest moved) and the daily tables rebuilt by the product's own code; then VACUUM
ANALYZE, as autovacuum would have left it. It is built once and reused while its description (runs,
days, schema version) matches; each round copies it with CREATE DATABASE ... TEMPLATE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from benchmarks.app_queries import database_url, fill
from llm_monitoring.database_url import normalize_url
from llm_monitoring.recompute import rebuild_daily_eval_summary, rebuild_daily_feedback, rebuild_daily_usage
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import schema_version

HISTORY_DAYS = 90
REBUILD_WINDOW_DAYS = 5  # rows read into memory at once: about runs / 18 runs and 7 times as many checks


@dataclass(frozen=True)
class History:
    runs: int
    first_new_day: date
    days: int = HISTORY_DAYS

    @property
    def name(self) -> str:
        return f"llmmon_bench_ingest_tpl_{self.runs}"

    @property
    def first_day(self) -> date:
        return self.first_new_day - timedelta(days=self.days)

    def description(self) -> str:
        """Stored as the database's comment: a template whose comment differs is rebuilt."""
        return f"llm-monitoring benchmark history: {self.runs} runs over {self.first_day}..{self.first_new_day}, schema {schema_version()[:12]}"


def _server_engine(server: str) -> sa.Engine:
    return sa.create_engine(normalize_url(server), isolation_level="AUTOCOMMIT")


def _comment(server: str, name: str) -> str | None:
    engine = _server_engine(server)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(name)s", {"name": name}
            ).scalar()
    finally:
        engine.dispose()


def _execute(server: str, *statements: str) -> float:
    engine = _server_engine(server)
    began = time.perf_counter()
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
    return time.perf_counter() - began


def ensure_template(server: str, history: History) -> str:
    """The template's name; built (or rebuilt) when missing or built for another history, upgraded when
    built for an earlier schema."""
    found = _comment(server, history.name)
    if found == history.description():
        print(f"reusing {history.name} ({history.description()})")
        return history.name
    if found is not None and found.rpartition(", schema ")[0] == history.description().rpartition(", schema ")[0]:
        return _upgrade(server, history)
    _execute(server, f'DROP DATABASE IF EXISTS "{history.name}" WITH (FORCE)', f'CREATE DATABASE "{history.name}"')
    began = time.perf_counter()
    database = Database(database_url(server, history.name))
    try:
        database.ensure_schema()
        if history.runs:
            start = datetime.combine(history.first_day, datetime.min.time(), UTC)
            fill(database, history.runs, start=start, spread=timedelta(days=history.days))
            _record_processed_files(database)
            _rebuild_daily_tables(database, history)
        size = _vacuum_analyze(database)
    finally:
        database.dispose()
    _describe(server, history)
    print(f"built {history.name} in {time.perf_counter() - began:.0f} s ({size})")
    return history.name


def _upgrade(server: str, history: History) -> str:
    """The same history in an earlier schema: upgraded in place, as a team's database would be."""
    began = time.perf_counter()
    database = Database(database_url(server, history.name))
    try:
        database.ensure_schema()
        _vacuum_analyze(database)
    finally:
        database.dispose()
    _describe(server, history)
    print(f"upgraded {history.name} to schema {schema_version()[:12]} in {time.perf_counter() - began:.0f} s")
    return history.name


def _vacuum_analyze(database: Database) -> str:
    """VACUUM ANALYZE, as autovacuum would have left the database; returns its size."""
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
        return connection.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar()


def _describe(server: str, history: History) -> None:
    description = history.description().replace("'", "''")
    _execute(server, f"COMMENT ON DATABASE \"{history.name}\" IS '{description}'")


def _record_processed_files(database: Database) -> None:
    """One ledger row per stored run, as the ingest that stored them would have written."""
    with database.transaction() as connection:
        connection.exec_driver_sql(
            "INSERT INTO processed_files (name, processed_as, content_hash, processed_at) "
            "SELECT 'run_' || id || '.json', '_run_' || id || '.json', content_hash, created_at FROM llm_logs ORDER BY id"
        )


def _rebuild_daily_tables(database: Database, history: History) -> None:
    day = history.first_day
    while day < history.first_new_day:
        end = min(day + timedelta(days=REBUILD_WINDOW_DAYS), history.first_new_day)
        window = datetime.combine(day, datetime.min.time(), UTC), datetime.combine(end, datetime.min.time(), UTC)
        for rebuild in (rebuild_daily_usage, rebuild_daily_eval_summary, rebuild_daily_feedback):
            rebuild(database, *window)
        day = end


def copy_template(server: str, template: str, name: str) -> float:
    """Seconds to create `name` as a copy of `template` (FILE_COPY: the files are copied, not WAL-logged)."""
    return _execute(
        server,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY',
    )


def drop_database(server: str, name: str) -> None:
    _execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
