"""How the Postgres database grows with the number of runs, and what retention and re-evaluation cost.

    # sizes of an existing database, read only (a read-only transaction, a lock timeout)
    uv run python benchmarks/postgres_scale.py sizes --database llmmon_bench_app --save sizes_1m.json
    uv run python benchmarks/postgres_scale.py compare sizes_100k.json sizes_1m.json

    # a scratch database filled as benchmarks/app_queries.py fills it (90 days of history), then on it:
    # its indexes against the same built anew; a re-evaluation of 7 days, twice; retention of the first
    # month and of one more day as batched deletes, each with a VACUUM; the raw logs of the second month
    # dropped; a month of copies of llm_logs and eval_checks partitioned by month, detached and dropped;
    # an index-only scan before and after a VACUUM; the ingest's upserts into run_day_totals
    uv run python benchmarks/postgres_scale.py churn --runs 100000 --database llmmon_scale_100k

Time, WAL and the table statistics' row counts for each step. WAL is the difference of
pg_current_wal_insert_lsn(), which counts every database of the server; when pg_waldump can read the
server's pg_wal (a local server, run as its owner or root), the WAL of this database alone is given
too. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from app_queries import DEFAULT_SERVER, SPREAD, START, database_url, fill, recreate_database  # noqa: E402

from llm_monitoring.core import evaluation  # noqa: E402
from llm_monitoring.core.records import ParseError  # noqa: E402
from llm_monitoring.database_url import normalize_url  # noqa: E402
from llm_monitoring.recompute import parse_stored_run  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.history import StoredRunLog, replace_checks_in_window  # noqa: E402
from llm_monitoring.storage.retention import delete_runs_before, drop_raw_logs_before  # noqa: E402
from llm_monitoring.storage.rollups import RunAmounts, add_to_day_totals, backfill_summaries  # noqa: E402
from llm_monitoring.storage.schema import run_day_totals  # noqa: E402
from llm_monitoring_tests.conftest import drop_postgres_database  # noqa: E402

RUN_TABLES = ("llm_logs", "eval_checks", "check_verdicts", "run_search", "feedback", "run_day_totals")
MB = 2**20

# ---------------------------------------------------------------------------- sizes

SIZES_SQL = """
SELECT c.relname AS name,
       pg_relation_size(c.oid) AS heap,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast,
       pg_table_size(c.oid) AS table_size,
       pg_indexes_size(c.oid) AS indexes,
       pg_total_relation_size(c.oid) AS total,
       c.reltuples::bigint AS estimated_rows,
       s.n_live_tup, s.n_dead_tup
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC
"""

INDEX_SQL = """
SELECT t.relname AS table_name, i.relname AS name, pg_relation_size(i.oid) AS size, am.amname AS method
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = 'public'
ORDER BY pg_relation_size(i.oid) DESC
"""


def read_only_engine(url: str) -> sa.Engine:
    """Every statement in a read-only transaction, and no wait on a lock longer than 5 s (an upgrade
    may hold the tables)."""
    return sa.create_engine(url, connect_args={"options": "-c default_transaction_read_only=on -c lock_timeout=5s"})


def measure_sizes(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        tables = [dict(row) for row in connection.execute(sa.text(SIZES_SQL)).mappings()]
        indexes = [dict(row) for row in connection.execute(sa.text(INDEX_SQL)).mappings()]
        for table in tables:
            if table["name"] in RUN_TABLES:
                table["rows"] = connection.scalar(sa.text(f"SELECT count(*) FROM {table['name']}"))
        database = connection.scalar(sa.text("SELECT pg_database_size(current_database())"))
        version = connection.scalar(sa.text("SHOW server_version"))
    runs = next(table["rows"] for table in tables if table["name"] == "llm_logs")
    return {"runs": runs, "database": database, "server_version": version, "tables": tables, "indexes": indexes}


def print_sizes(sizes: dict[str, Any]) -> None:
    runs = sizes["runs"]
    print(f"{runs:,} runs; database {sizes['database'] / MB:,.0f} MB, {sizes['database'] / runs:,.0f} bytes per run")
    print(f"\n{'table':<20}{'rows':>12}{'heap MB':>10}{'TOAST MB':>10}{'idx MB':>9}{'total MB':>10}  bytes/run: heap TOAST idx total")
    for table in sizes["tables"]:
        if table["total"] < 1 * MB and table["name"] not in RUN_TABLES:
            continue
        per_run = [table[key] / runs for key in ("heap", "toast", "indexes", "total")]
        rows = table.get("rows", table["estimated_rows"])
        print(
            f"{table['name']:<20}{rows:>12,}{table['heap'] / MB:>10.1f}{table['toast'] / MB:>10.1f}{table['indexes'] / MB:>9.1f}"
            f"{table['total'] / MB:>10.1f}  {per_run[0]:>9.0f} {per_run[1]:>5.0f} {per_run[2]:>4.0f} {per_run[3]:>5.0f}"
            f"   dead {table['n_dead_tup'] or 0:,}"
        )
    print(f"\n{'index':<40}{'table':<16}{'MB':>9}{'bytes/run':>11}")
    for index in sizes["indexes"]:
        if index["size"] >= 1 * MB:
            print(f"{index['name']:<40}{index['table_name']:<16}{index['size'] / MB:>9.1f}{index['size'] / runs:>11.1f}")


def relation_sizes(sizes: dict[str, Any]) -> dict[str, int]:
    relations = {"database": sizes["database"]}
    for table in sizes["tables"]:
        relations |= {
            f"{table['name']} (total)": table["total"],
            f"{table['name']} heap": table["heap"],
            f"{table['name']} TOAST": table["toast"],
        }
    return relations | {index["name"]: index["size"] for index in sizes["indexes"]}


def compare(small: dict[str, Any], large: dict[str, Any]) -> None:
    """Bytes per run in both, and how much each relation grew against the runs."""
    print(f"{small['runs']:,} -> {large['runs']:,} runs: a linear relation grows x{large['runs'] / small['runs']:.1f}")
    print(f"\n{'relation':<40}{'bytes/run small':>16}{'bytes/run large':>16}{'growth':>9}")
    large_sizes = relation_sizes(large)
    for name, size in relation_sizes(small).items():
        other = large_sizes.get(name)
        if other is not None and max(size, other) >= 1 * MB:
            print(f"{name:<40}{size / small['runs']:>16.1f}{other / large['runs']:>16.1f}{other / size:>8.1f}x")


# ---------------------------------------------------------------------------- WAL


@dataclass(frozen=True)
class Wal:
    server_bytes: int  # every database's
    database_bytes: int | None  # this database's records (pg_waldump), None when pg_wal cannot be read
    full_page_bytes: int | None

    def __str__(self) -> str:
        if self.database_bytes is None:
            return f"WAL {self.server_bytes / MB:,.1f} MB (whole server)"
        return (
            f"WAL {self.database_bytes / MB:,.1f} MB of this database ({self.full_page_bytes / MB:,.1f} MB full-page images), "
            f"{self.server_bytes / MB:,.1f} MB on the whole server"
        )


BLOCK_REF = re.compile(r"rel \d+/(\d+)/\d+")
RECORD = re.compile(r"len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+)/([0-9A-F]+)")


def lsn_number(text: str) -> int:
    high, low = text.split("/")
    return int(high, 16) << 32 | int(low, 16)


class WalFollower:
    """pg_waldump following the server's WAL from a start position while something runs: the server
    recycles segments at every checkpoint, which a busy shared server requests every few seconds, so
    reading them afterwards finds them gone."""

    def __init__(self, waldump: str, wal_directory: Path, database_oid: int, start: str) -> None:
        self.database_oid = str(database_oid)
        self.ours = self.full_pages = 0
        self.message = self.last_line = ""
        self.lines = 0
        self.marker = f"/{database_oid}/"
        self.reached = lsn_number(start)
        self.end = 2**64  # known when the measured block is over
        self.command = [waldump, "--follow", "-p", str(wal_directory), "-s", start]
        self.process: subprocess.Popen[str] | None = None
        self.stopped = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        # pg_waldump cannot start at the very end of the WAL ("could not find a valid record"), and stops
        # when it reaches a segment the server has not created yet: it is started again from the end of
        # the last record it read, until it is stopped.
        start = self.command[-1]
        while not self.stopped:
            lines_before = self.lines
            self.process = subprocess.Popen([*self.command[:-1], start], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._count(line)
            self.process.wait()
            if self.lines > lines_before:
                position = self._position()
                start = f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
            time.sleep(0.1)

    def _count(self, line: str) -> None:
        # Most lines are other databases': only a substring test for them, and only every 1,000th
        # position parsed, so that the reader keeps up with a busy server.
        if not line.startswith("rmgr:"):  # pg_waldump's own messages
            self.message = line.strip()
            return
        self.last_line = line
        self.lines += 1
        ours = self.marker in line
        if not ours and self.lines % 1000:
            return
        record = RECORD.search(line)
        if record is None:
            return
        length, total = int(record.group(1)), int(record.group(2))
        position = int(record.group(3), 16) << 32 | int(record.group(4), 16)
        self.reached = position + total
        # Commit records name no relation and are left out: a few dozen bytes each.
        if ours and position < self.end and self.database_oid in BLOCK_REF.findall(line):
            self.ours += total
            self.full_pages += total - length  # what a record carries beyond itself is its page images

    def _position(self) -> int:
        record = RECORD.search(self.last_line)
        if record is not None:
            self.reached = max(self.reached, (int(record.group(3), 16) << 32 | int(record.group(4), 16)) + int(record.group(2)))
        return self.reached

    def finish(self, end: str, timeout: float = 120) -> tuple[int, int] | None:
        """This database's WAL bytes and full-page image bytes up to `end`; None if pg_waldump did not get there."""
        self.end = lsn_number(end)
        target, deadline = self.end - 8, time.monotonic() + timeout  # the end of the last record, aligned
        while self._position() < target and time.monotonic() < deadline:
            time.sleep(0.2)
        done = self._position() >= target
        self.stopped = True
        if self.process is not None:
            self.process.terminate()
        self.reader.join(timeout=10)
        if not done:
            print(f"  (pg_waldump stopped {(target - self.reached) / MB:,.1f} MB before the end: {self.message[:200]})")
        return (self.ours, self.full_pages) if done else None


class WalMeter:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        with engine.connect() as connection:
            self.database_oid = connection.scalar(sa.text("SELECT oid FROM pg_database WHERE datname = current_database()"))
            data_directory = connection.scalar(sa.text("SELECT current_setting('data_directory')"))
        self.wal_directory = Path(data_directory) / "pg_wal"
        found = shutil.which("pg_waldump") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_waldump"))), None)
        readable = self.wal_directory.is_dir() and os.access(self.wal_directory, os.R_OK)
        self.waldump = str(found) if found and readable else None

    def lsn(self) -> str:
        with self.engine.connect() as connection:
            # The insert position: the write position lags it by what sits in the WAL buffers.
            return connection.scalar(sa.text("SELECT pg_current_wal_insert_lsn()::text"))

    @contextmanager
    def measure(self) -> Iterator[list[Wal]]:
        """Yields a list that holds the Wal written inside the block once it is over."""
        start = self.lsn()
        follower = WalFollower(self.waldump, self.wal_directory, self.database_oid, start) if self.waldump else None
        result: list[Wal] = []
        try:
            yield result
        finally:
            end = self.lsn()
            ours = follower.finish(end) if follower else None
        with self.engine.connect() as connection:
            server = int(connection.scalar(sa.text("SELECT pg_wal_lsn_diff(:end, :start)"), {"end": end, "start": start}))
        result.append(Wal(server, *(ours or (None, None))))


# ---------------------------------------------------------------------------- table statistics

COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "n_dead_tup")


def table_counters(engine: sa.Engine) -> dict[str, dict[str, int]]:
    # Backends send their statistics at most once a second.
    time.sleep(1.5)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        rows = connection.execute(sa.text(f"SELECT relname, {', '.join(COUNTERS)} FROM pg_stat_user_tables")).mappings()
        return {row["relname"]: {name: row[name] for name in COUNTERS} for row in rows}


def print_counter_changes(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> None:
    for name in sorted(after):
        change = {key: after[name][key] - before.get(name, {}).get(key, 0) for key in COUNTERS[:-1]}
        if any(change.values()) or after[name]["n_dead_tup"] != before.get(name, {}).get("n_dead_tup", 0):
            parts = ", ".join(f"{key[2:] if key != 'n_tup_hot_upd' else 'hot_upd'} {value:,}" for key, value in change.items() if value)
            print(f"    {name:<18} {parts}; dead tuples now {after[name]['n_dead_tup']:,}")


@contextmanager
def measured(label: str, engine: sa.Engine, meter: WalMeter) -> Iterator[None]:
    counters = table_counters(engine)
    with meter.measure() as wal:
        began = time.perf_counter()
        yield
        seconds = time.perf_counter() - began
    print(f"\n{label}: {seconds:.2f} s, {wal[0]}")
    print_counter_changes(counters, table_counters(engine))


def vacuum(engine: sa.Engine, meter: WalMeter, tables: tuple[str, ...]) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            with meter.measure() as wal:
                began = time.perf_counter()
                connection.exec_driver_sql(f"VACUUM {table}")
                seconds = time.perf_counter() - began
            print(f"    VACUUM {table:<16} {seconds:6.2f} s, {wal[0]}")


# ---------------------------------------------------------------------------- the scenario


def reevaluate_stored(run: StoredRunLog) -> list[Any] | None:
    if not run.raw_json:
        return None
    try:
        return evaluation.evaluate_run(parse_stored_run(run.raw_json, fallback_time=run.run_started_at))
    except ParseError:
        return None


def set_autovacuum(engine: sa.Engine, enabled: bool) -> None:
    # Off while measuring, so that the dead tuples counted and the VACUUM timed are these, not a worker's.
    options = "autovacuum_enabled, toast.autovacuum_enabled"
    statement = f"RESET ({options})" if enabled else "SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in RUN_TABLES:
            connection.exec_driver_sql(f"ALTER TABLE {table} {statement}")


PARTITIONED_COPY = """
CREATE TABLE scale_runs (LIKE llm_logs INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMPRESSION)
    PARTITION BY RANGE (run_started_at);
ALTER TABLE scale_runs ALTER COLUMN run_started_at SET NOT NULL;
ALTER TABLE scale_runs ADD PRIMARY KEY (id, run_started_at);
ALTER TABLE scale_runs ADD UNIQUE (content_hash, run_started_at);
CREATE INDEX ON scale_runs (model, run_started_at);
CREATE INDEX ON scale_runs (provider, run_started_at);
CREATE INDEX ON scale_runs (agent_name);
CREATE INDEX ON scale_runs (created_at);
CREATE INDEX ON scale_runs (run_started_at DESC NULLS LAST, id DESC)
    INCLUDE (provider, model, agent_name, total_input_tokens, total_output_tokens, cache_read_tokens, total_cost);
CREATE TABLE scale_checks (LIKE eval_checks INCLUDING DEFAULTS, run_started_at timestamptz NOT NULL)
    PARTITION BY RANGE (run_started_at);
ALTER TABLE scale_checks ADD PRIMARY KEY (id, run_started_at);
ALTER TABLE scale_checks ADD UNIQUE (log_id, check_name, evaluator_version, run_started_at);
ALTER TABLE scale_checks ADD FOREIGN KEY (log_id, run_started_at) REFERENCES scale_runs (id, run_started_at) ON DELETE CASCADE;
CREATE INDEX ON scale_checks (check_name, passed, log_id) INCLUDE (evaluator_version);
"""


def month_bounds(index: int) -> tuple[str, str]:
    first = START.replace(month=START.month + index)
    following = START.replace(month=START.month + index + 1)
    return first.isoformat(), following.isoformat()


def partition_drop(engine: sa.Engine, meter: WalMeter) -> None:
    """Copies of llm_logs and eval_checks partitioned by month (every unique key carrying the partition
    key, the foreign key too), one month of rows in them, then that month detached and dropped."""
    month = 1  # the first month is gone by now (retention); the second is the oldest left
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS scale_checks, scale_runs")
        connection.exec_driver_sql(PARTITIONED_COPY)
        for index in range(4):
            low, high = month_bounds(index)
            for parent in ("scale_runs", "scale_checks"):
                connection.exec_driver_sql(f"CREATE TABLE {parent}_m{index} PARTITION OF {parent} FOR VALUES FROM ('{low}') TO ('{high}')")
        low, high = month_bounds(month)
        began = time.perf_counter()
        connection.exec_driver_sql(
            f"INSERT INTO scale_runs SELECT * FROM llm_logs WHERE run_started_at >= '{low}' AND run_started_at < '{high}'"
        )
        connection.exec_driver_sql(
            "INSERT INTO scale_checks SELECT c.*, r.run_started_at FROM eval_checks c JOIN scale_runs r ON r.id = c.log_id"
        )
        # A day of the next month, so that the parents hold more than the month dropped.
        following = (START + timedelta(days=62)).isoformat()
        connection.exec_driver_sql(
            f"INSERT INTO scale_runs SELECT * FROM llm_logs WHERE run_started_at >= '{high}' AND run_started_at < '{following}'"
        )
        connection.exec_driver_sql(
            f"INSERT INTO scale_checks SELECT c.*, r.run_started_at FROM eval_checks c JOIN scale_runs r ON r.id = c.log_id "
            f"WHERE r.run_started_at >= '{high}'"
        )
        print(f"\npartitioned copies filled in {time.perf_counter() - began:.1f} s (not part of the cost below)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        runs = connection.scalar(sa.text(f"SELECT count(*) FROM scale_runs_m{month}"))
        checks = connection.scalar(sa.text(f"SELECT count(*) FROM scale_checks_m{month}"))
        size = connection.scalar(
            sa.text(f"SELECT pg_total_relation_size('scale_runs_m{month}') + pg_total_relation_size('scale_checks_m{month}')")
        )
    label = f"one month as partitions ({runs:,} runs, {checks:,} checks, {size / MB:,.0f} MB): DETACH + DROP, checks first"
    autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with measured(label, engine, meter), autocommit as connection:
        for parent in ("scale_checks", "scale_runs"):
            began = time.perf_counter()
            connection.exec_driver_sql(f"ALTER TABLE {parent} DETACH PARTITION {parent}_m{month}")
            detached = time.perf_counter() - began
            connection.exec_driver_sql(f"DROP TABLE {parent}_m{month}")
            print(f"    {parent}: DETACH {1000 * detached:.1f} ms, DROP {1000 * (time.perf_counter() - began - detached):.1f} ms")
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE scale_checks, scale_runs")


def churn(args: argparse.Namespace) -> None:
    url = database_url(args.server, args.database)
    database = None
    if args.reuse:
        database = Database(url)
        with database.connect() as connection:
            if connection.scalar(sa.text("SELECT count(*) FROM llm_logs")) != args.runs:
                raise SystemExit(f"{args.database} does not hold {args.runs:,} runs: run without --reuse to fill it")
    if database is None:
        recreate_database(args.server, args.database)
        database = Database(url)
        database.ensure_schema()
        seconds = fill(database, args.runs)
        print(f"Filled {args.database} with {args.runs:,} runs in {seconds:.1f} s")
    engine = database.engine
    try:
        with engine.connect() as connection:
            empty_search = not connection.scalar(sa.text("SELECT EXISTS (SELECT FROM run_search)"))
        if empty_search:
            # app_queries' fill leaves run_search empty; an upgrade or the ingest fills it.
            with database.transaction() as connection:
                backfill_summaries(connection, {"run_search"})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE run_search")
        sizes = measure_sizes(engine)
        print_sizes(sizes)
        if args.save:
            args.save.write_text(json.dumps(sizes, indent=1, default=str))
        scenario(database, engine)
    finally:
        database.dispose()
        if not args.keep:
            drop_postgres_database(normalize_url(args.server), args.database)


def compact_index_sizes(engine: sa.Engine) -> None:
    """The largest indexes against the same index built anew (CREATE INDEX packs its leaves to the
    fillfactor; inserts in the middle of an index split pages in halves)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rows = connection.execute(
            sa.text(
                "SELECT i.relname, pg_get_indexdef(i.oid) AS definition, pg_relation_size(i.oid) AS size FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE t.relname IN ('llm_logs', 'eval_checks', 'check_verdicts', 'run_search') ORDER BY 3 DESC"
            )
        ).all()
        print("\nindexes as the writes left them against the same index built anew:")
        for name, definition, size in rows:
            if size < 4 * MB:
                continue
            scratch = f"{name[:40]}_anew"
            statement = re.sub(r"^CREATE (UNIQUE )?INDEX \S+", f"CREATE INDEX {scratch}", definition)
            connection.exec_driver_sql(statement)
            rebuilt = connection.scalar(sa.text(f"SELECT pg_relation_size('{scratch}')"))
            connection.exec_driver_sql(f"DROP INDEX {scratch}")
            print(f"    {name:<40}{size / MB:>8.1f} MB, built anew {rebuilt / MB:>7.1f} MB ({size / rebuilt:.2f}x)")


def day_totals_upserts(database: Database, engine: sa.Engine, batches: int = 2_000) -> None:
    """The ingest's upserts into run_day_totals: `batches` batches of today's runs (one per profile and
    day key), as add_to_day_totals writes them, with the table's fillfactor as it is."""
    with database.connect() as connection:
        combinations = connection.execute(
            sa.select(run_day_totals.c.provider, run_day_totals.c.model, run_day_totals.c.agent_name).distinct()
        ).all()
        pages_before = connection.scalar(sa.text("SELECT pg_relation_size('run_day_totals') / 8192"))
    today = START + SPREAD + timedelta(hours=1)
    runs = [RunAmounts(today, *combination, 1_000, 200, 0, Decimal("0.001")) for combination in combinations]
    with measured(f"ingest upserts: {batches:,} batches adding to today's {len(runs)} rows of run_day_totals", engine, WalMeter(engine)):
        for _ in range(batches):
            with database.transaction() as connection:
                add_to_day_totals(connection, runs)
    with database.connect() as connection:
        pages_after = connection.scalar(sa.text("SELECT pg_relation_size('run_day_totals') / 8192"))
    print(f"    run_day_totals: {pages_before} pages before, {pages_after} after")


VISIBILITY_QUERY = (
    "SELECT count(*), sum(total_input_tokens), sum(total_output_tokens), sum(total_cost) FROM llm_logs "
    "WHERE run_started_at >= :day AND run_started_at < :day + interval '1 day'"
)


def visibility(engine: sa.Engine, runs: int = 20_000) -> None:
    """A day of new runs summed through ix_llm_logs_run_order (the app's totals over a partial day):
    an index-only scan reads the heap for every page a VACUUM has not marked all-visible yet."""
    day = START + SPREAD + timedelta(days=1)
    with engine.begin() as connection:
        runs = connection.execute(
            sa.text(
                "INSERT INTO llm_logs (filepath, content_hash, agent_name, provider, model, user_prompt, assistant_answer, "
                "total_input_tokens, total_output_tokens, cache_read_tokens, total_cost, run_started_at, origin, created_at) "
                "SELECT filepath || '-new', md5(id::text || 'new') || md5(id::text), agent_name, provider, model, user_prompt, "
                "assistant_answer, total_input_tokens, total_output_tokens, cache_read_tokens, total_cost, "
                ":day + (row_number() OVER (ORDER BY id)) * interval '1 second' * 4, origin, now() "
                "FROM (SELECT * FROM llm_logs ORDER BY id DESC LIMIT :runs) AS newest"
            ),
            {"day": day, "runs": runs},
        ).rowcount
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE llm_logs")
        print(f"\n{runs:,} new runs of one day summed as the app sums a partial day (the plan Postgres chose):")
        for moment in ("before VACUUM", "after VACUUM"):
            if moment == "after VACUUM":
                connection.exec_driver_sql("VACUUM llm_logs")
            connection.execute(sa.text(VISIBILITY_QUERY), {"day": day})  # warm the cache: the difference shown is the heap's
            plan = connection.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {VISIBILITY_QUERY}"), {"day": day}).scalar()
            top = plan[0]
            scan = top["Plan"]["Plans"][0]
            buffers = scan.get("Shared Hit Blocks", 0) + scan.get("Shared Read Blocks", 0)
            print(
                f"    {moment}: {scan['Node Type']}, heap fetches {scan.get('Heap Fetches', 0):,}, "
                f"{buffers:,} buffers, {top['Execution Time']:.1f} ms"
            )


def scenario(database: Database, engine: sa.Engine) -> None:
    meter = WalMeter(engine)
    if meter.waldump is None:
        print("pg_waldump not found: WAL figures are the whole server's")
    compact_index_sizes(engine)
    set_autovacuum(engine, enabled=False)
    try:
        end = START + SPREAD
        window = (end - timedelta(days=7), end)
        evaluating = [0.0]

        def evaluate(run: StoredRunLog) -> list[Any] | None:
            began = time.perf_counter()
            checks = reevaluate_stored(run)
            evaluating[0] += time.perf_counter() - began
            return checks

        for attempt in ("first pass: version 99 is new, rows inserted", "second pass: version 99 replaced"):
            evaluating[0] = 0.0
            outcomes = []
            with measured(f"re-evaluation of 7 days, {attempt}", engine, meter):
                outcomes.append(replace_checks_in_window(database, *window, evaluate, "99"))
            print(f"    {outcomes[0]}; {evaluating[0]:.2f} s of it parsing and evaluating in Python")
        print("  VACUUM after the re-evaluations:")
        vacuum(engine, meter, ("eval_checks", "check_verdicts"))

        for days, label in ((30, "a month"), (31, "one more day")):
            cutoff = START + timedelta(days=days)
            deleted: list[dict[str, int]] = []
            with measured(f"retention of {label}: delete_runs_before({cutoff:%Y-%m-%d}), batches of 500 runs", engine, meter):
                deleted.append(delete_runs_before(database, cutoff))
            print(f"    rows deleted: {deleted[0]}")
            print("  VACUUM after the deletion:")
            vacuum(engine, meter, ("eval_checks", "check_verdicts", "run_search", "feedback", "run_day_totals", "llm_logs"))

        raw_cutoff = START + timedelta(days=60)
        dropped: list[int] = []
        with measured(f"raw logs dropped: drop_raw_logs_before({raw_cutoff:%Y-%m-%d})", engine, meter):
            dropped.append(drop_raw_logs_before(database, raw_cutoff))
        print(f"    raw logs dropped: {dropped[0]:,}")
        vacuum(engine, meter, ("llm_logs",))
        print_sizes(measure_sizes(engine))

        partition_drop(engine, meter)
        visibility(engine)
        day_totals_upserts(database, engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM FULL run_day_totals")
            connection.exec_driver_sql("ALTER TABLE run_day_totals SET (fillfactor = 50)")
            connection.exec_driver_sql("VACUUM FULL run_day_totals")
        print("  the same with run_day_totals rewritten at fillfactor 50:")
        day_totals_upserts(database, engine)
    finally:
        set_autovacuum(engine, enabled=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sizes = commands.add_parser("sizes", help="sizes of an existing database (read only)")
    sizes.add_argument("--database", required=True)
    sizes.add_argument("--server", default=DEFAULT_SERVER)
    sizes.add_argument("--save", type=Path, help="write the figures as JSON here")
    comparison = commands.add_parser("compare", help="bytes per run of two saved measurements")
    comparison.add_argument("small", type=Path)
    comparison.add_argument("large", type=Path)
    scratch = commands.add_parser("churn", help="fill a scratch database and measure re-evaluation, retention and partitions")
    scratch.add_argument("--runs", type=int, default=100_000)
    scratch.add_argument("--database", default="llmmon_scale")
    scratch.add_argument("--server", default=DEFAULT_SERVER)
    scratch.add_argument("--reuse", action="store_true", help="measure on the database as it is (it must hold --runs runs)")
    scratch.add_argument("--keep", action="store_true", help="do not drop the database afterwards")
    scratch.add_argument("--save", type=Path, help="write the sizes before the scenario as JSON here")
    args = parser.parse_args()
    if args.command == "sizes":
        engine = read_only_engine(database_url(args.server, args.database))
        figures = measure_sizes(engine)
        engine.dispose()
        print_sizes(figures)
        if args.save:
            args.save.write_text(json.dumps(figures, indent=1, default=str))
    elif args.command == "compare":
        compare(json.loads(args.small.read_text()), json.loads(args.large.read_text()))
    else:
        churn(args)


if __name__ == "__main__":
    main()
