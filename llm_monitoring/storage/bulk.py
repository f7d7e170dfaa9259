"""Batched writes: runs and their checks encoded before the transaction, then COPY (Postgres) or one
executemany (SQLite). Content already stored is skipped by its hash, never duplicated."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from llm_monitoring.core.records import CheckResult, LogRecord, PriceResult
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.rollups import (
    AMOUNT_COLUMNS,
    RUN_COLUMNS_IN_VERDICTS,
    VERDICT_COLUMNS,
    RunAmounts,
    add_to_day_totals,
    record_search,
)
from llm_monitoring.storage.schema import SafeText, check_verdicts, eval_checks, llm_logs

# ---------------------------------------------------------------------------- records to rows


@dataclass(frozen=True)
class RunToStore:
    """One parsed, priced and evaluated run, ready for one batch insert."""

    filepath: str
    content_hash: str
    raw_json: str
    record: LogRecord
    price: PriceResult
    checks: Sequence[CheckResult]
    parser_version: str
    evaluator_version: str
    origin: str = "file"
    created_at: datetime | None = None
    redactions: str | None = None  # JSON object: matches redacted per detector; None: nothing was

    def log_row(self) -> dict[str, Any]:
        record, price = self.record, self.price
        return {
            "filepath": self.filepath,
            "content_hash": self.content_hash,
            "agent_name": record.agent_name,
            "provider": record.provider,
            "model": record.model,
            "user_prompt": record.user_prompt,
            "instructions": record.instructions,
            "total_input_tokens": record.input_tokens,
            "total_output_tokens": record.output_tokens,
            "cache_read_tokens": record.cache_read_tokens,
            "cache_write_tokens": record.cache_write_tokens,
            "requests": record.requests,
            "tool_call_count": len(record.tool_calls),
            "tool_names": json.dumps(list(record.tool_names)),
            "finish_reasons": json.dumps(list(record.finish_reasons)),
            "assistant_answer": record.assistant_answer,
            "raw_json": self.raw_json,
            "input_cost": price.input_cost,
            "output_cost": price.output_cost,
            "total_cost": price.total_cost,
            "pricing_status": price.status,
            "price_data_version": price.price_data_version,
            "provider_reported_cost": record.provider_reported_cost,
            "run_started_at": record.run_started_at,
            "run_finished_at": record.run_finished_at,
            "duration_seconds": record.duration_seconds,
            "parser_version": self.parser_version,
            "value_notes": json.dumps(list(record.value_notes)) if record.value_notes else None,
            "redactions": self.redactions,
            "origin": self.origin,
            "created_at": self.created_at or datetime.now(UTC),
        }


@dataclass(frozen=True)
class BatchResult:
    inserted: dict[str, int]  # content hash -> new llm_logs.id
    already_stored: set[str]  # content hashes that were stored before this batch


LOG_COLUMNS: tuple[str, ...] = tuple(column.name for column in llm_logs.columns)
CHECK_COLUMNS = ("log_id", "check_name", "passed", "score", "details", "evaluator_version", "created_at")


def check_values(log_id: int, checks: Iterable[CheckResult], evaluator_version: str, now: datetime) -> list[tuple[Any, ...]]:
    """eval_checks rows in CHECK_COLUMNS order."""
    return [(log_id, *_check_fields(check, evaluator_version), now) for check in checks]


def _check_fields(check: CheckResult, evaluator_version: str) -> tuple[Any, ...]:
    """CHECK_COLUMNS between log_id and created_at."""
    return (check.check_name, check.passed, check.score, check.details, evaluator_version)


def check_rows(log_id: int, checks: Iterable[CheckResult], evaluator_version: str, now: datetime) -> list[dict[str, Any]]:
    return [dict(zip(CHECK_COLUMNS, values, strict=True)) for values in check_values(log_id, checks, evaluator_version, now)]


@dataclass(frozen=True)
class EncodedRun:
    """A run's rows with every value already converted for one database's driver, ids left out:
    encoded before the transaction begins, so that it holds the write lock only to assign ids and
    stream rows."""

    content_hash: str
    log_values: tuple[Any, ...]  # LOG_COLUMNS without "id"
    checks: tuple[tuple[Any, ...], ...]  # CHECK_COLUMNS without "log_id"
    amounts: RunAmounts  # what run_day_totals adds up, as Python values


_AMOUNTS = operator.itemgetter(*AMOUNT_COLUMNS)
# The places in EncodedRun.log_values of the run's columns a verdict row repeats.
_VERDICT_RUN_VALUES = operator.itemgetter(*(LOG_COLUMNS.index(name) - 1 for name in RUN_COLUMNS_IN_VERDICTS))


_LOG_VALUES = operator.itemgetter(*LOG_COLUMNS[1:])  # a log_row dict -> its values in column order


class RunEncoder:
    """Encodes one run at a time, so that a value the driver cannot take fails that run alone."""

    def __init__(self, dialect_name: str) -> None:
        self._encode_log = _row_encoder(llm_logs, LOG_COLUMNS[1:], dialect_name)
        self._encode_check = _row_encoder(eval_checks, CHECK_COLUMNS[1:-1], dialect_name)
        # One timestamp for the checks of every run encoded here, encoded once rather than once per check.
        (self._created_at,) = _row_encoder(eval_checks, CHECK_COLUMNS[-1:], dialect_name)((datetime.now(UTC),))

    def __call__(self, run: RunToStore) -> EncodedRun:
        checks = tuple((*self._encode_check(_check_fields(check, run.evaluator_version)), self._created_at) for check in run.checks)
        row = run.log_row()
        return EncodedRun(run.content_hash, self._encode_log(_LOG_VALUES(row)), checks, RunAmounts(*_AMOUNTS(row)))


def _encode_runs(runs: Sequence[RunToStore], dialect_name: str) -> list[EncodedRun]:
    encode = RunEncoder(dialect_name)
    return [encode(run) for run in runs]


@cache
def _row_encoder(table: sa.Table, columns: tuple[str, ...], dialect_name: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Row tuple -> the tuple the driver takes, with the conversions the column types would apply.

    SQLite gets every bind processor (decimal text, UTC timestamps as text, NUL-safe text); binary
    COPY on Postgres takes Python values as they are, and only text needs its NUL guard.
    """
    if dialect_name == "sqlite":
        dialect = sqlite.dialect()
        processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    else:
        processors = [_nul_guard if isinstance(table.c[name].type, SafeText) else None for name in columns]
    converting = [(index, processor) for index, processor in enumerate(processors) if processor is not None]

    def encode(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for index, processor in converting:
            values[index] = processor(values[index])
        return tuple(values)

    return encode


def _nul_guard(value: Any) -> Any:
    if value.__class__ is str and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def store_runs(database: Database, runs: Sequence[RunToStore]) -> BatchResult:
    """Store runs and their checks in one transaction. Content already stored is skipped, never duplicated."""
    return store_encoded(database, _encode_runs(list({run.content_hash: run for run in runs}.values()), database.dialect))


def run_encoder(database: Database) -> RunEncoder:
    return RunEncoder(database.dialect)


def store_encoded(database: Database, runs: Sequence[EncodedRun]) -> BatchResult:
    """store_runs for runs already encoded (by run_encoder), each content hash once."""
    unique = list({run.content_hash: run for run in runs}.values())
    if not unique:
        return BatchResult({}, set())
    with database.transaction() as connection:
        new_runs = _new_runs(connection, unique)
        if connection.dialect.name == "postgresql":
            inserted = _copy_logs(connection, new_runs)
        else:
            inserted = _insert_logs_sqlite(connection, new_runs)
        stored = [(inserted[run.content_hash], run) for run in new_runs if run.content_hash in inserted]
        write_rows(connection, eval_checks, CHECK_COLUMNS, [(log_id, *check) for log_id, run in stored for check in run.checks])
        # A new run's checks are its only rows, so they are its current verdicts.
        verdicts = [
            (log_id, check[0], check[1], check[4], *_VERDICT_RUN_VALUES(run.log_values)) for log_id, run in stored for check in run.checks
        ]
        write_rows(connection, check_verdicts, VERDICT_COLUMNS, verdicts)
        add_to_day_totals(connection, [run.amounts for _, run in stored])
        record_search(connection, [log_id for log_id, _ in stored])
    return BatchResult(inserted, {run.content_hash for run in unique} - inserted.keys())


# ---------------------------------------------------------------------------- bulk load


def insert_rows(connection: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Encode rows of Python values (tuples in `columns` order) and insert them in bulk."""
    encode = _row_encoder(table, tuple(columns), connection.dialect.name)
    write_rows(connection, table, columns, [encode(row) for row in rows])


def write_rows(connection: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert encoded rows in bulk: binary COPY on Postgres, one executemany on SQLite.

    Both bypass SQLAlchemy's per-row statement machinery, which cost more than the databases' own
    work on large batches.
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, table, columns, rows)
        return
    quoted = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', list(rows))


def _new_runs(connection: Connection, runs: Sequence[EncodedRun]) -> list[EncodedRun]:
    hashes = [run.content_hash for run in runs]
    stored = set(connection.scalars(sa.select(llm_logs.c.content_hash).where(llm_logs.c.content_hash.in_(hashes))))
    return [run for run in runs if run.content_hash not in stored]


def _insert_logs_sqlite(connection: Connection, new_runs: Sequence[EncodedRun]) -> dict[str, int]:
    """Insert new runs with ids assigned here; the transaction's BEGIN IMMEDIATE holds the write lock,
    so no other writer can store the same content or take these ids in between."""
    if not new_runs:
        return {}
    first_id = (connection.scalar(sa.select(sa.func.max(llm_logs.c.id))) or 0) + 1
    ids = range(first_id, first_id + len(new_runs))
    write_rows(connection, llm_logs, LOG_COLUMNS, [(log_id, *run.log_values) for run, log_id in zip(new_runs, ids, strict=True)])
    return {run.content_hash: log_id for run, log_id in zip(new_runs, ids, strict=True)}


def _copy_logs(connection: Connection, new_runs: Sequence[EncodedRun]) -> dict[str, int]:
    """COPY new runs into llm_logs with ids taken from its sequence up front.

    COPY is several times faster than INSERT for wide rows, but cannot skip conflicts: content
    stored earlier is filtered out first, and if a concurrent writer stores the same content in
    between, the COPY fails on the unique hash and this batch falls back to INSERT ... ON CONFLICT
    DO NOTHING inside a savepoint. Either way the unique content hash decides, not timing.
    """
    if not new_runs:
        return {}
    ids = list(
        connection.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence('llm_logs', 'id')) FROM generate_series(1, %(n)s)", {"n": len(new_runs)}
        ).scalars()
    )
    rows = [(log_id, *run.log_values) for run, log_id in zip(new_runs, ids, strict=True)]
    try:
        with connection.begin_nested():
            _copy_rows(connection, llm_logs, LOG_COLUMNS, rows)
    except sa.exc.IntegrityError:
        statement = (
            postgresql.insert(llm_logs)
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(llm_logs.c.id, llm_logs.c.content_hash)
        )
        dicts = [dict(zip(LOG_COLUMNS, row, strict=True)) for row in rows]
        return {content_hash: log_id for log_id, content_hash in connection.execute(statement, dicts)}
    return {run.content_hash: log_id for run, log_id in zip(new_runs, ids, strict=True)}


def _copy_rows(connection: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    quoted = ", ".join(f'"{name}"' for name in columns)
    cursor = connection.connection.driver_connection.cursor()
    try:
        # Binary COPY: the raw logs go to the server as they are, with no escaping on either side
        # (measured: a third of the server's time and most of the client's for text COPY).
        with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([_binary_copy_type(table.c[name]) for name in columns])
            for row in rows:
                copy.write_row(row)
    except Exception as error:  # psycopg errors -> SQLAlchemy's, so callers handle one family
        raise _as_sqlalchemy_error(error) from error
    finally:
        cursor.close()


_BINARY_COPY_TYPES = {
    "BIGINT": "int8",
    "INTEGER": "int4",
    "FLOAT": "float8",
    "BOOLEAN": "bool",
    "TEXT": "text",
    "VARCHAR": "text",
    "NUMERIC": "numeric",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


@cache
def _binary_copy_type(column: sa.Column[Any]) -> str:
    """The type psycopg writes a column's values as in binary COPY, from the column's Postgres type."""
    compiled = column.type.compile(dialect=postgresql.dialect())
    return _BINARY_COPY_TYPES[compiled.split("(")[0].strip()]


def _as_sqlalchemy_error(error: Exception) -> Exception:
    import psycopg

    if isinstance(error, psycopg.errors.UniqueViolation):
        return sa.exc.IntegrityError("COPY", None, error)
    if isinstance(error, psycopg.OperationalError):
        return sa.exc.OperationalError("COPY", None, error)
    if isinstance(error, psycopg.Error):
        return sa.exc.DBAPIError("COPY", None, error)
    return error
