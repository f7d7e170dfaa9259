"""Storage: SQLAlchemy 2 Core tables, schema upgrade, batched writes and reads, on SQLite and Postgres.

This is the one module that knows SQL. Everything else hands it records and gets records back.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from llm_monitoring.config import get_settings
from llm_monitoring.core.records import CheckResult, LogRecord, PriceResult
# mask_url and normalize_url live in database_url; importing them from here keeps working.
from llm_monitoring.database_url import hide_secrets, mask_url, mask_whole_url, normalize_url, url_problem  # noqa: F401


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it with its password masked."""


class InvalidDatabaseUrl(DatabaseUnavailable):
    """The database URL cannot be used at all (malformed, unknown driver); the message says why."""


# ---------------------------------------------------------------------------- column types


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Money(sa.TypeDecorator[Decimal]):
    """Exact decimal costs: NUMERIC on Postgres, decimal text on SQLite (whose REAL would round)."""

    impl = sa.Numeric(24, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(24, 12, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return format(Decimal(value), "f") if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).normalize() if dialect.name == "sqlite" else Decimal(value)


class SafeText(sa.TypeDecorator[str]):
    """Text that Postgres accepts: a NUL character (legal in JSON strings) becomes U+FFFD."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is not None and "\x00" in value:
            return value.replace("\x00", "\ufffd")
        return value


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest value a BigId holds: BIGINT on Postgres, a 64-bit INTEGER on SQLite

# ---------------------------------------------------------------------------- tables

metadata = sa.MetaData()

llm_logs = sa.Table(
    "llm_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("filepath", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("agent_name", SafeText),
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("user_prompt", SafeText),
    sa.Column("instructions", SafeText),
    sa.Column("total_input_tokens", sa.BigInteger),
    sa.Column("total_output_tokens", sa.BigInteger),
    sa.Column("cache_read_tokens", sa.BigInteger),
    sa.Column("cache_write_tokens", sa.BigInteger),
    sa.Column("requests", sa.Integer),
    sa.Column("tool_call_count", sa.Integer),
    sa.Column("tool_names", SafeText),  # JSON array, in call order
    sa.Column("finish_reasons", SafeText),  # JSON array
    sa.Column("assistant_answer", SafeText),
    sa.Column("raw_json", SafeText),
    sa.Column("input_cost", Money),
    sa.Column("output_cost", Money),
    sa.Column("total_cost", Money),
    sa.Column("pricing_status", SafeText),
    sa.Column("price_data_version", sa.String(64)),
    sa.Column("provider_reported_cost", Money),
    sa.Column("run_started_at", UTCDateTime),
    sa.Column("run_finished_at", UTCDateTime),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("parser_version", sa.String(16)),
    # JSON array: values of the log that could not be stored as logged (stored NULL), each with why.
    sa.Column("value_notes", SafeText),
    # "file" for ingested logs, "fake" for generated demo data (deletable as a set).
    sa.Column("origin", sa.String(16), nullable=False, server_default="file"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("content_hash", name="uq_llm_logs_content_hash"),
    # On Postgres ix_llm_logs_run_order (below) leads with run_started_at and serves the same queries.
    sa.Index("ix_llm_logs_run_started_at", "run_started_at").ddl_if(dialect="sqlite"),
    sa.Index("ix_llm_logs_model_run_started_at", "model", "run_started_at"),
    sa.Index("ix_llm_logs_provider_run_started_at", "provider", "run_started_at"),
    sa.Index("ix_llm_logs_agent_name", "agent_name"),
    sa.Index("ix_llm_logs_created_at", "created_at"),
)
# The review app lists runs newest first with undated runs last; Postgres needs an index in exactly
# that order (SQLite sorts NULLs last in DESC already and rejects NULLS LAST in an index).
# It also covers the columns the app filters and sums, so its totals are an index-only scan.
sa.Index(
    "ix_llm_logs_run_order",
    llm_logs.c.run_started_at.desc().nulls_last(),
    llm_logs.c.id.desc(),
    postgresql_include=[
        "provider", "model", "agent_name", "total_input_tokens", "total_output_tokens", "cache_read_tokens", "total_cost",
    ],
).ddl_if(dialect="postgresql")
# Word search in prompts and answers (see run_search_document); capped so that a huge answer can
# never exceed the 1 MB limit of a tsvector and fail an ingest.
SEARCH_DOCUMENT_CHARS = 100_000
RUN_SEARCH_DOCUMENT = sa.func.to_tsvector(
    sa.literal_column("'simple'::regconfig"),
    sa.func.left(
        sa.func.coalesce(llm_logs.c.user_prompt, sa.literal_column("''"))
        .op("||")(sa.literal_column("' '"))
        .op("||")(sa.func.coalesce(llm_logs.c.assistant_answer, sa.literal_column("''"))),
        SEARCH_DOCUMENT_CHARS,
    ),
)
# Attached explicitly: an expression that starts with a literal does not find its table by itself.
llm_logs.append_constraint(
    sa.Index("ix_llm_logs_search", RUN_SEARCH_DOCUMENT, postgresql_using="gin").ddl_if(dialect="postgresql")
)

eval_checks = sa.Table(
    "eval_checks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean),  # NULL: not applicable
    sa.Column("score", sa.Float),
    sa.Column("details", SafeText),
    sa.Column("evaluator_version", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("log_id", "check_name", "evaluator_version", name="uq_eval_checks_log_check_version"),
    # The review app's "check passed/failed" filter reads only this index.
    sa.Index("ix_eval_checks_outcome", "check_name", "passed", "log_id", postgresql_include=["evaluator_version"]),
)
# Postgres assumes a check's outcome is independent of its name, so it guessed 11,000 "not applicable"
# rows for a check that never is, and scanned every run; statistics on the pair fix the estimate.
sa.event.listen(
    metadata,
    "after_create",
    sa.DDL(
        "CREATE STATISTICS IF NOT EXISTS st_eval_checks_name_passed (mcv) ON check_name, passed FROM eval_checks"
    ).execute_if(dialect="postgresql"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("is_good", sa.Boolean, nullable=False),
    sa.Column("comments", SafeText),
    sa.Column("reference_answer", SafeText),
    sa.Column("reviewer", SafeText),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime),
    sa.Index("ix_feedback_log_id", "log_id"),
    sa.Index("ix_feedback_created_at", "created_at"),
)

# A deleted rating leaves no row to notice, so its run's day is kept here: the aggregates sensor
# rebuilds that day's daily_feedback like after any other feedback change.
feedback_deletions = sa.Table(
    "feedback_deletions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", BigId, nullable=False),
    sa.Column("log_id", BigId, nullable=False),
    sa.Column("run_started_at", UTCDateTime),
    sa.Column("deleted_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_deletions_deleted_at", "deleted_at"),
)

ingest_errors = sa.Table(
    "ingest_errors",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("filepath", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("error", SafeText, nullable=False),
    sa.Column("quarantined_as", SafeText),
    sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
    sa.Column("first_seen", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("resolved_at", UTCDateTime),
    sa.UniqueConstraint("content_hash", name="uq_ingest_errors_content_hash"),
    sa.Index("ix_ingest_errors_last_seen", "last_seen"),
)

# Every file the ingest has moved out of the pending set, under its new name. With the default
# prefix marking, a file whose name already starts with the prefix is new unless it is listed here
# (agents named "_search" write "_search_....json"): nothing is skipped on its name alone.
processed_files = sa.Table(
    "processed_files",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", SafeText, nullable=False),
    sa.Column("processed_as", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Index("ix_processed_files_processed_as", "processed_as"),
)

# Alerts of failed quality gates, one row per gate and failing day (or quarantined file): written by
# the gate's evaluation, delivered to ALERT_WEBHOOK_URL by the alerts sensor (llm_monitoring/alerts.py
# has the queries). The unique key makes a day alerted once, whatever evaluates it again.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("asset", sa.String(255), nullable=False),
    sa.Column("gate", sa.String(255), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),  # the failing day (YYYY-MM-DD) or a file's content hash
    sa.Column("details", SafeText, nullable=False),  # JSON: what the message says about this subject
    sa.Column("run_id", sa.String(64)),  # the run whose evaluation failed, for the link in the message
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),  # also the lease of the sender delivering it
    sa.Column("last_error", SafeText),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("asset", "gate", "subject", name="uq_alerts_asset_gate_subject"),
    sa.Index("ix_alerts_due", "sent_at", "next_attempt_at"),
)

# The schema this code upgrades a database to: a digest of every table, column and index, so any
# change to the tables above makes ensure_schema upgrade once and then find it in place.
schema_state = sa.Table("schema_state", metadata, sa.Column("version", sa.String(64), nullable=False))
@lru_cache(maxsize=1)
def schema_version() -> str:
    # Computed on first use: the daily tables are defined further down this module.
    shape = [
        (table.name, [(column.name, repr(column.type)) for column in table.columns], sorted(index.name for index in table.indexes))
        for table in metadata.sorted_tables
    ]
    return hashlib.sha256(repr(shape).encode()).hexdigest()


def _stored_schema_version(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table(schema_state.name):
        return None
    return connection.scalar(sa.select(schema_state.c.version))


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
            "origin": self.origin,
            "created_at": self.created_at or datetime.now(timezone.utc),
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
    return [dict(zip(CHECK_COLUMNS, values)) for values in check_values(log_id, checks, evaluator_version, now)]


@dataclass(frozen=True)
class EncodedRun:
    """A run's rows with every value already converted for one database's driver, ids left out:
    encoded before the transaction begins, so that it holds the write lock only to assign ids and
    stream rows."""

    content_hash: str
    log_values: tuple[Any, ...]  # LOG_COLUMNS without "id"
    checks: tuple[tuple[Any, ...], ...]  # CHECK_COLUMNS without "log_id"


_LOG_VALUES = operator.itemgetter(*LOG_COLUMNS[1:])  # a log_row dict -> its values in column order


class RunEncoder:
    """Encodes one run at a time, so that a value the driver cannot take fails that run alone."""

    def __init__(self, dialect_name: str) -> None:
        self._encode_log = _row_encoder(llm_logs, LOG_COLUMNS[1:], dialect_name)
        self._encode_check = _row_encoder(eval_checks, CHECK_COLUMNS[1:-1], dialect_name)
        # One timestamp for the checks of every run encoded here, encoded once rather than once per check.
        (self._created_at,) = _row_encoder(eval_checks, CHECK_COLUMNS[-1:], dialect_name)((datetime.now(timezone.utc),))

    def __call__(self, run: RunToStore) -> EncodedRun:
        checks = tuple(
            (*self._encode_check(_check_fields(check, run.evaluator_version)), self._created_at) for check in run.checks
        )
        return EncodedRun(run.content_hash, self._encode_log(_LOG_VALUES(run.log_row())), checks)


def _encode_runs(runs: Sequence[RunToStore], dialect_name: str) -> list[EncodedRun]:
    encode = RunEncoder(dialect_name)
    return [encode(run) for run in runs]


@lru_cache(maxsize=None)
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


# ---------------------------------------------------------------------------- the database


class Database:
    """The monitoring database. `Database()` reads DATABASE_URL (default: SQLite monitoring.db)."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        given = url or get_settings().database_url
        problem = url_problem(given)
        if problem is None:
            self.url = normalize_url(given)
            try:
                self.engine: Engine = _create_engine(self.url, echo=echo)
            except (sa.exc.ArgumentError, ImportError, ValueError, TypeError) as error:
                problem = _url_error_reason(error)
        if problem is not None:
            raise InvalidDatabaseUrl(f"database URL {mask_whole_url(given)} is not usable: {problem}")

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return mask_url(self.engine.url.render_as_string(hide_password=True))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database, which another connection (or process) cannot see."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    def dispose(self) -> None:
        self.engine.dispose()

    def _open(self) -> Connection:
        # Whatever stops a connection from opening (server down, refused login, a connection option
        # the driver rejects) means the database cannot be used: one DatabaseUnavailable line.
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as error:
            raise self.unavailable(error) from None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; a failure to reach the database becomes DatabaseUnavailable (password masked)."""
        with self._open() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self._open().execution_options(**{WRITES: True}) as connection, connection.begin():
                yield connection
        except sa.exc.DBAPIError as error:
            if is_connection_error(error):
                raise self.unavailable(error) from None
            raise

    def unavailable(self, error: BaseException) -> DatabaseUnavailable:
        first_line = self.hide_secrets(str(getattr(error, "orig", error) or error)).strip().splitlines()
        reason = first_line[0] if first_line else type(error).__name__
        return DatabaseUnavailable(f"database {self.display_url} is unavailable: {reason}")

    def hide_secrets(self, text: str) -> str:
        """`text` with this database's password masked, in URLs and wherever else it appears."""
        url = self.engine.url
        return hide_secrets(text, (url.password, *(url.query.get(key) for key in ("password", "sslpassword"))))

    # -------------------------------------------------------------- schema

    def ensure_schema(self) -> None:
        """Create missing tables, columns and indexes; safe to call on every start.

        Every step and sensor tick calls it: one read finds the schema of this code already in place,
        and only an upgrade inspects every table under the write lock.
        """
        with self.connect() as connection:
            if _stored_schema_version(connection) == schema_version():
                return
        with self.transaction() as connection:
            metadata.create_all(connection, checkfirst=True)
            _add_missing_columns(connection)
            if connection.dialect.name == "postgresql":
                _tune_postgres(connection)
            connection.execute(sa.delete(schema_state))
            connection.execute(sa.insert(schema_state).values(version=schema_version()))

    # -------------------------------------------------------------- ingest

    def store_runs(self, runs: Sequence[RunToStore]) -> BatchResult:
        """Store runs and their checks in one transaction. Content already stored is skipped, never duplicated."""
        return self.store_encoded(_encode_runs(list({run.content_hash: run for run in runs}.values()), self.dialect))

    def run_encoder(self) -> RunEncoder:
        return RunEncoder(self.dialect)

    def store_encoded(self, runs: Sequence[EncodedRun]) -> BatchResult:
        """store_runs for runs already encoded (by run_encoder), each content hash once."""
        unique = list({run.content_hash: run for run in runs}.values())
        if not unique:
            return BatchResult({}, set())
        with self.transaction() as connection:
            new_runs = _new_runs(connection, unique)
            if connection.dialect.name == "postgresql":
                inserted = _copy_logs(connection, new_runs)
            else:
                inserted = _insert_logs_sqlite(connection, new_runs)
            rows = [(inserted[run.content_hash], *check) for run in new_runs if run.content_hash in inserted for check in run.checks]
            _write_rows(connection, eval_checks, CHECK_COLUMNS, rows)
        return BatchResult(inserted, {run.content_hash for run in unique} - inserted.keys())

    def known_processed(self, names: Sequence[str]) -> set[str]:
        """Which of `names` (relative to the log folder) the ingest gave to files it moved."""
        found: set[str] = set()
        if not names:
            return found
        with self.connect() as connection:
            if not sa.inspect(connection).has_table(processed_files.name):
                return found  # a database the ingest never wrote to has processed nothing
            if connection.dialect.name == "postgresql":
                column = processed_files.c.processed_as
                found.update(connection.scalars(sa.select(column).where(column == sa.func.any(sa.literal(list(names), postgresql.ARRAY(sa.Text))))))
                return found
            column = processed_files.c.processed_as
            found.update(row.processed_as for row in _select_in(connection, sa.select(column), column, names))
        return found

    def record_processed(self, moves: Sequence[tuple[str, str, str]]) -> None:
        """Record (name, processed_as, content_hash) for files moved after their batch committed."""
        if not moves:
            return
        now = datetime.now(timezone.utc)
        with self.transaction() as connection:
            columns = ("name", "processed_as", "content_hash", "processed_at")
            _insert_rows(connection, processed_files, columns, [(*move, now) for move in moves])

    def record_ingest_error(self, filepath: str, content_hash: str, error: str, quarantined_as: str | None) -> None:
        now = datetime.now(timezone.utc)
        values = {
            "filepath": filepath,
            "content_hash": content_hash,
            "error": error,
            "quarantined_as": quarantined_as,
            "first_seen": now,
            "last_seen": now,
            "occurrences": 1,
        }
        with self.transaction() as connection:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            statement = insert(ingest_errors).values(values)
            statement = statement.on_conflict_do_update(
                index_elements=["content_hash"],
                set_={
                    "filepath": statement.excluded.filepath,
                    "error": statement.excluded.error,
                    "quarantined_as": statement.excluded.quarantined_as,
                    "last_seen": statement.excluded.last_seen,
                    "occurrences": ingest_errors.c.occurrences + 1,
                    "resolved_at": None,
                },
            )
            connection.execute(statement)

    def note_quarantined(self, content_hash: str, quarantined_as: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                sa.update(ingest_errors)
                .where(ingest_errors.c.content_hash == content_hash)
                .values(quarantined_as=quarantined_as)
            )

    def open_ingest_errors(self) -> list[dict[str, Any]]:
        with self.connect() as connection:
            rows = connection.execute(
                sa.select(ingest_errors).where(ingest_errors.c.resolved_at.is_(None)).order_by(ingest_errors.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def resolve_ingest_errors(self, content_hashes: Iterable[str]) -> None:
        hashes = list(content_hashes)
        if not hashes:
            return
        with self.transaction() as connection:
            connection.execute(
                sa.update(ingest_errors)
                .where(ingest_errors.c.content_hash.in_(hashes))
                .values(resolved_at=datetime.now(timezone.utc))
            )

    # -------------------------------------------------------------- reads

    def count(self, table: sa.Table) -> int:
        with self.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0

    def get_log(self, log_id: int) -> dict[str, Any] | None:
        with self.connect() as connection:
            row = connection.execute(sa.select(llm_logs).where(llm_logs.c.id == log_id)).first()
            return dict(row._mapping) if row else None

    def summary(self) -> dict[str, Any]:
        """Totals for the command line: runs, tokens, cost by model, check pass rates."""
        with self.connect() as connection:
            totals = connection.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.sum(llm_logs.c.total_input_tokens),
                    sa.func.sum(llm_logs.c.total_output_tokens),
                    sa.func.sum(llm_logs.c.cache_read_tokens),
                )
            ).one()
            by_model: dict[tuple[str | None, str | None], dict[str, Any]] = {}
            for provider, model, total_cost, status in connection.execute(
                sa.select(llm_logs.c.provider, llm_logs.c.model, llm_logs.c.total_cost, llm_logs.c.pricing_status)
            ):
                entry = by_model.setdefault((provider, model), {"runs": 0, "cost": Decimal(0), "unpriced": 0})
                entry["runs"] += 1
                if total_cost is None:
                    entry["unpriced"] += 1
                else:
                    entry["cost"] += total_cost
            checks = connection.execute(
                sa.select(
                    eval_checks.c.check_name,
                    sa.func.count(eval_checks.c.passed),
                    sa.func.sum(sa.case((eval_checks.c.passed.is_(True), 1), else_=0)),
                    sa.func.count(),
                ).group_by(eval_checks.c.check_name)
            ).all()
        return {
            "runs": totals[0],
            "input_tokens": totals[1] or 0,
            "output_tokens": totals[2] or 0,
            "cache_read_tokens": totals[3] or 0,
            "by_model": by_model,
            "checks": {name: {"applicable": applicable, "passed": passed or 0, "rows": rows} for name, applicable, passed, rows in checks},
        }


def _select_in(
    connection: Connection, statement: sa.Select[Any], column: sa.ColumnElement[Any], values: Iterable[Any], chunk_size: int = 900
) -> Iterator[sa.Row[Any]]:
    """Rows of `statement` whose `column` is one of `values`, one query per chunk: SQLite builds before
    3.32 accept at most 999 bound parameters."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), chunk_size):
        yield from connection.execute(statement.where(column.in_(wanted[start:start + chunk_size])))


@contextmanager
def open_database(url: str | None = None, *, ensure_schema: bool = True) -> Iterator[Database]:
    """A Database for one command or step: schema ensured (unless told not to), disposed of at the end."""
    database = Database(url)
    try:
        if ensure_schema:
            database.ensure_schema()
        yield database
    finally:
        database.dispose()


# ---------------------------------------------------------------------------- bulk load


def _insert_rows(connection: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Encode rows of Python values (tuples in `columns` order) and insert them in bulk."""
    encode = _row_encoder(table, tuple(columns), connection.dialect.name)
    _write_rows(connection, table, columns, [encode(row) for row in rows])


def _write_rows(connection: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
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
    _write_rows(connection, llm_logs, LOG_COLUMNS, [(log_id, *run.log_values) for run, log_id in zip(new_runs, ids)])
    return {run.content_hash: log_id for run, log_id in zip(new_runs, ids)}


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
    rows = [(log_id, *run.log_values) for run, log_id in zip(new_runs, ids)]
    try:
        with connection.begin_nested():
            _copy_rows(connection, llm_logs, LOG_COLUMNS, rows)
    except sa.exc.IntegrityError:
        statement = (
            postgresql.insert(llm_logs)
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(llm_logs.c.id, llm_logs.c.content_hash)
        )
        dicts = [dict(zip(LOG_COLUMNS, row)) for row in rows]
        return {content_hash: log_id for log_id, content_hash in connection.execute(statement, dicts)}
    return {run.content_hash: log_id for run, log_id in zip(new_runs, ids)}


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


@lru_cache(maxsize=None)
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


# ---------------------------------------------------------------------------- helpers


def _create_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a writer takes the
        # lock at the start of its transaction and two processes never deadlock on an upgrade. Reads
        # begin deferred: in WAL mode they neither wait for a writer nor hold one up.
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=2, max_overflow=4)


SQLITE_PAGE_SIZE = 16384
WRITES = "llm_monitoring_writes"  # execution option of the connections Database.transaction() opens


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITES) else "BEGIN")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Raw logs average tens of KB: with 16 KB pages each needs a third of the overflow pages it
    # needs with the default 4 KB, and bulk ingest writes about 30% faster (README, "Performance").
    # Takes effect only on a new, empty database file, so it must come before WAL mode is set.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


# SQLSTATE classes of errors caused by the values written: data exception, integrity constraint
# violation, program limit exceeded (an index row or a tsvector too large).
_ROW_ERROR_CLASSES = ("22", "23", "54")


def is_data_error(error: BaseException) -> bool:
    """True when a write failed because of the values of the rows written, not because of the database:
    retrying the rows one at a time then finds the one at fault. An outage, a full disk, a lock or a
    missing table is not a data error."""
    import sqlite3

    if isinstance(error, sa.exc.StatementError):  # SQLAlchemy's wrapper of what the driver raised
        return error.orig is not None and is_data_error(error.orig)
    sqlstate = getattr(error, "sqlstate", None)  # psycopg's errors from the server
    if sqlstate:
        return sqlstate[:2] in _ROW_ERROR_CLASSES
    if isinstance(error, sqlite3.Error):
        return isinstance(error, (sqlite3.DataError, sqlite3.IntegrityError))
    if type(error).__module__.startswith("psycopg"):
        return type(error).__name__ == "DataError"
    if isinstance(error, (sa.exc.SQLAlchemyError, DatabaseUnavailable, MemoryError, OSError)):
        return False
    # What a driver raises while converting a value (an int over 64 bits, a lone surrogate).
    return isinstance(error, (ValueError, TypeError, ArithmeticError, UnicodeError, RecursionError))


def _url_error_reason(error: Exception) -> str:
    detail = mask_url(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    if isinstance(error, sa.exc.NoSuchModuleError):
        return f"no such database driver ({detail})"
    if isinstance(error, sa.exc.ArgumentError):
        return "it is not a database URL such as postgresql://HOST:PORT/DATABASE or sqlite:///PATH"
    if isinstance(error, ImportError):
        return f"its driver is not installed ({detail}); postgresql:// and sqlite:/// are supported"
    return f"cannot parse it ({detail})"


# Postgres SQLSTATEs that mean the connection, not the statement, failed: class 08 (connection
# exception), the server shutting down or starting (57P01-57P03), too many connections (53300).
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_SQLITE_CANT_OPEN = "SQLITE_CANTOPEN"


def is_connection_error(error: sa.exc.DBAPIError) -> bool:
    """Whether the database could not be reached or the connection was lost, as opposed to a statement
    it refused (a query too complex, a value out of range): only the first is worth a retry later."""
    if error.connection_invalidated:
        return True
    cause = error.orig
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate:
        return sqlstate.startswith(_CONNECTION_SQLSTATES)
    if type(cause).__module__.split(".")[0] == "psycopg":
        import psycopg

        # psycopg sets no SQLSTATE when the client itself failed: no connection, or it was lost.
        return isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError))
    return str(getattr(cause, "sqlite_errorname", "")).startswith(_SQLITE_CANT_OPEN)


def _add_missing_columns(connection: Connection) -> None:
    """Additive upgrades: a column added in a later version is added to an existing table."""
    inspector = sa.inspect(connection)
    preparer = connection.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            column_type = column.type.compile(dialect=connection.dialect)
            default = ""
            if column.server_default is not None and isinstance(column.server_default.arg, str):
                default = f" DEFAULT '{column.server_default.arg}'"
            connection.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {column_type}{default}"
            )
        existing_indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing_indexes:
                index.create(connection, checkfirst=True)


def _tune_postgres(connection: Connection) -> None:
    # Raw logs are large, compressible JSON text: lz4 (Postgres 14+) compresses them several
    # times faster than the default pglz at a similar ratio (figures in the README).
    version = connection.dialect.server_version_info or (0,)
    if version[0] >= 14:
        current = connection.exec_driver_sql(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'llm_logs'::regclass AND attname = 'raw_json'"
        ).scalar()
        if current != "l":
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql("ALTER TABLE llm_logs ALTER COLUMN raw_json SET COMPRESSION lz4")
            except sa.exc.DBAPIError:
                pass  # a server built without lz4 keeps pglz; nothing else depends on it


# ---------------------------------------------------------------------------- feedback and the review app
# Writes for llm_monitoring/feedback.py and reads for llm_monitoring/app.py. The list queries never
# select raw_json and filter, count and sum with the same WHERE clause, so the app's page and its
# totals always describe the same set of runs.


class MissingRuns(LookupError):
    """Feedback names runs that are not stored; nothing was written."""

    def __init__(self, log_ids: Iterable[int]) -> None:
        self.log_ids = sorted(set(log_ids))
        super().__init__(", ".join(f"#{log_id}" for log_id in self.log_ids))


def existing_log_ids(database: Database, log_ids: Iterable[int]) -> set[int]:
    with database.connect() as connection:
        return _existing_log_ids(connection, log_ids)


def _existing_log_ids(connection: Connection, log_ids: Iterable[int]) -> set[int]:
    return {row.id for row in _select_in(connection, sa.select(llm_logs.c.id), llm_logs.c.id, log_ids)}


def insert_feedback(database: Database, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert feedback rows in one transaction and return their ids in order; all or nothing.

    Raises MissingRuns (and stores nothing) when any row names a run that is not stored.
    """
    if not rows:
        return []
    now = datetime.now(timezone.utc)
    values = [{**row, "created_at": row.get("created_at") or now, "updated_at": None} for row in rows]
    wanted = {row["log_id"] for row in values}
    try:
        with database.transaction() as connection:
            missing = wanted - _existing_log_ids(connection, wanted)
            if missing:
                raise MissingRuns(missing)
            result = connection.execute(
                sa.insert(feedback).returning(feedback.c.id, sort_by_parameter_order=True), values
            )
            return list(result.scalars())
    except sa.exc.IntegrityError:
        # The run was deleted between the check and the insert: the foreign key refused the row.
        raise MissingRuns(wanted - existing_log_ids(database, wanted)) from None


def update_feedback_row(database: Database, feedback_id: int, values: dict[str, Any]) -> dict[str, Any] | None:
    """Change some fields of one feedback row and stamp updated_at; None when the row does not exist."""
    with database.transaction() as connection:
        result = connection.execute(
            sa.update(feedback)
            .where(feedback.c.id == feedback_id)
            .values(**values, updated_at=datetime.now(timezone.utc))
            .returning(*feedback.c)
        ).first()
        return dict(result._mapping) if result else None


def delete_feedback_row(database: Database, feedback_id: int) -> bool:
    with database.transaction() as connection:
        found = connection.execute(
            sa.select(feedback.c.log_id, llm_logs.c.run_started_at)
            .select_from(feedback.join(llm_logs, feedback.c.log_id == llm_logs.c.id))
            .where(feedback.c.id == feedback_id)
        ).first()
        if found is None:
            return False
        connection.execute(
            sa.insert(feedback_deletions).values(
                feedback_id=feedback_id, log_id=found.log_id, run_started_at=found.run_started_at, deleted_at=datetime.now(timezone.utc)
            )
        )
        return connection.execute(sa.delete(feedback).where(feedback.c.id == feedback_id)).rowcount > 0


def get_feedback_row(database: Database, feedback_id: int) -> dict[str, Any] | None:
    with database.connect() as connection:
        row = connection.execute(sa.select(feedback).where(feedback.c.id == feedback_id)).first()
        return dict(row._mapping) if row else None


def list_feedback_rows(
    database: Database, *, log_id: int | None = None, reviewer: str | None = None, limit: int | None = 100
) -> list[dict[str, Any]]:
    """Feedback newest first, optionally of one run or one reviewer."""
    query = sa.select(feedback).order_by(feedback.c.created_at.desc(), feedback.c.id.desc())
    if log_id is not None:
        query = query.where(feedback.c.log_id == log_id)
    if reviewer is not None:
        query = query.where(feedback.c.reviewer == reviewer)
    if limit is not None:
        query = query.limit(limit)
    with database.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def feedback_signatures(database: Database, log_ids: Iterable[int]) -> set[tuple[Any, ...]]:
    """(log_id, is_good, comments, reference_answer, reviewer) of the stored feedback of these runs."""
    columns = (feedback.c.log_id, feedback.c.is_good, feedback.c.comments, feedback.c.reference_answer, feedback.c.reviewer)
    with database.connect() as connection:
        return {tuple(row) for row in _select_in(connection, sa.select(*columns), feedback.c.log_id, log_ids)}


CHECK_OUTCOMES = ("passed", "failed", "not applicable")


@dataclass(frozen=True)
class RunFilters:
    """What the review app's sidebar narrows the runs to; None means "any"."""

    provider: str | None = None
    model: str | None = None
    agent: str | None = None
    started_from: datetime | None = None  # inclusive
    started_before: datetime | None = None  # exclusive
    check_name: str | None = None
    check_outcome: str | None = None  # one of CHECK_OUTCOMES, with check_name
    has_feedback: bool | None = None
    feedback_is_good: bool | None = None  # runs with at least one good (or bad) feedback
    text: str | None = None  # substring of the prompt or the answer, case-insensitive


@dataclass(frozen=True)
class RunTotals:
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    total_cost: Decimal
    unpriced_runs: int


@dataclass(frozen=True)
class FilterOptions:
    providers: list[str]
    models: list[str]
    agents: list[str]
    check_names: list[str]


def _version_is_newer(newer: sa.ColumnElement[Any], older: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    # Versions are numbers kept as text: "10" is newer than "9", so compare the length first.
    return sa.or_(
        sa.func.length(newer) > sa.func.length(older),
        sa.and_(sa.func.length(newer) == sa.func.length(older), newer > older),
    )


def version_sort_key(version: str) -> tuple[int, str]:
    """Python twin of _version_is_newer: sorts evaluator versions oldest first."""
    return len(version), version


def current_checks(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A run's current verdicts: per check, the row of the newest evaluator version (the rule
    _check_condition applies in SQL), so a check an evaluator dropped keeps its last verdict."""
    newest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        held = newest.get(row["check_name"])
        if held is None or version_sort_key(row["evaluator_version"]) > version_sort_key(held["evaluator_version"]):
            newest[row["check_name"]] = row
    return list(newest.values())


def _check_condition(check_name: str, outcome: str) -> sa.ColumnElement[bool]:
    """The run's newest-version row of this check says `outcome`."""
    check, later = eval_checks.alias("check_row"), eval_checks.alias("later_row")
    if outcome == "passed":
        matches = check.c.passed.is_(True)
    elif outcome == "failed":
        matches = check.c.passed.is_(False)
    elif outcome == "not applicable":
        matches = check.c.passed.is_(None)
    else:
        raise ValueError(f"check outcome must be one of {', '.join(CHECK_OUTCOMES)}, got {outcome!r}")
    superseded = (
        sa.exists()
        .where(later.c.log_id == check.c.log_id, later.c.check_name == check.c.check_name)
        .where(_version_is_newer(later.c.evaluator_version, check.c.evaluator_version))
    )
    return (
        sa.exists()
        .where(check.c.log_id == llm_logs.c.id, check.c.check_name == check_name, matches)
        .where(~superseded)
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _run_conditions(filters: RunFilters, dialect: str) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in ((llm_logs.c.provider, filters.provider), (llm_logs.c.model, filters.model), (llm_logs.c.agent_name, filters.agent)):
        if value is not None:
            conditions.append(column == value)
    if filters.started_from is not None:
        conditions.append(llm_logs.c.run_started_at >= filters.started_from)
    if filters.started_before is not None:
        conditions.append(llm_logs.c.run_started_at < filters.started_before)
    if filters.check_name:
        conditions.append(_check_condition(filters.check_name, filters.check_outcome or "failed"))
    if filters.feedback_is_good is not None:
        conditions.append(
            sa.exists().where(feedback.c.log_id == llm_logs.c.id, feedback.c.is_good.is_(filters.feedback_is_good))
        )
    elif filters.has_feedback is not None:
        has_any = sa.exists().where(feedback.c.log_id == llm_logs.c.id)
        conditions.append(has_any if filters.has_feedback else ~has_any)
    text = (filters.text or "").strip()
    if text:
        conditions.append(_text_condition(text, dialect))
    return conditions


_SEARCH_WORD = re.compile(r"\w+")
# A search is one condition per word: SQLite refuses a LIKE pattern over 50,000 bytes and an
# expression deeper than 1,000, Postgres a query past its stack depth. These limits keep far below.
SEARCH_TEXT_CHARS = 1_000
SEARCH_WORDS = 50


class InvalidSearch(ValueError):
    """Search text beyond what a search accepts; the message says which limit."""


def _text_condition(text: str, dialect: str) -> sa.ColumnElement[bool]:
    """Every word of `text` appears in the prompt or the answer, case-insensitively.

    On Postgres a word matches the start of a word (an index-backed full-text search: a scan of
    100,000 answers with ILIKE takes seconds); on SQLite it matches anywhere.
    """
    if len(text) > SEARCH_TEXT_CHARS:
        raise InvalidSearch(f"Search text is limited to {SEARCH_TEXT_CHARS:,} characters; this one has {len(text):,}.")
    words = _SEARCH_WORD.findall(text.lower())
    if len(words) > SEARCH_WORDS:
        raise InvalidSearch(f"Search is limited to {SEARCH_WORDS} words; this one has {len(words):,}.")
    if dialect == "postgresql" and words:
        query = " & ".join(f"{word}:*" for word in words)
        return RUN_SEARCH_DOCUMENT.op("@@")(sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), query))
    conditions = []
    for word in words or [text]:
        pattern = f"%{_escape_like(word)}%"
        conditions.append(
            sa.or_(
                llm_logs.c.user_prompt.ilike(pattern, escape="\\"),
                llm_logs.c.assistant_answer.ilike(pattern, escape="\\"),
            )
        )
    return sa.and_(*conditions)


def _newest_first(dialect: str) -> list[sa.ColumnElement[Any]]:
    started = llm_logs.c.run_started_at.desc()
    # Undated runs go last on both databases (SQLite does that by itself and rejects NULLS LAST in indexes).
    return [started.nulls_last() if dialect == "postgresql" else started, llm_logs.c.id.desc()]


RUN_LIST_COLUMNS = (
    llm_logs.c.id,
    llm_logs.c.run_started_at,
    llm_logs.c.provider,
    llm_logs.c.model,
    llm_logs.c.agent_name,
    llm_logs.c.total_input_tokens,
    llm_logs.c.total_output_tokens,
    llm_logs.c.cache_read_tokens,
    llm_logs.c.total_cost,
    llm_logs.c.pricing_status,
    llm_logs.c.duration_seconds,
    llm_logs.c.tool_call_count,
)
PROMPT_PREVIEW_CHARS = 120


def list_runs(database: Database, filters: RunFilters, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """One page of runs, newest first (run time, then id), without raw_json.

    Each row also carries `prompt_preview`, `checks_passed`, `checks_failed`, `checks_not_applicable`
    (newest evaluator version of the run), `feedback_good` and `feedback_bad`.
    """
    with database.connect() as connection:
        query = (
            sa.select(*RUN_LIST_COLUMNS, sa.func.substr(llm_logs.c.user_prompt, 1, PROMPT_PREVIEW_CHARS).label("prompt_preview"))
            .where(*_run_conditions(filters, connection.dialect.name))
            .order_by(*_newest_first(connection.dialect.name))
            .limit(limit)
            .offset(offset)
        )
        rows = [dict(row._mapping) for row in connection.execute(query)]
        ids = [row["id"] for row in rows]
        if not ids:
            return rows
        checks: dict[int, list[dict[str, Any]]] = {}
        for row in connection.execute(
            sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.evaluator_version, eval_checks.c.passed)
            .where(eval_checks.c.log_id.in_(ids))
        ).mappings():
            checks.setdefault(row["log_id"], []).append(row)
        votes: dict[tuple[int, bool], int] = {
            (log_id, is_good): count
            for log_id, is_good, count in connection.execute(
                sa.select(feedback.c.log_id, feedback.c.is_good, sa.func.count())
                .where(feedback.c.log_id.in_(ids))
                .group_by(feedback.c.log_id, feedback.c.is_good)
            )
        }
    for row in rows:
        outcomes = [check["passed"] for check in current_checks(checks.get(row["id"], []))]
        row["checks_passed"] = sum(1 for passed in outcomes if passed is True)
        row["checks_failed"] = sum(1 for passed in outcomes if passed is False)
        row["checks_not_applicable"] = sum(1 for passed in outcomes if passed is None)
        row["feedback_good"] = votes.get((row["id"], True), 0)
        row["feedback_bad"] = votes.get((row["id"], False), 0)
    return rows


def run_totals(database: Database, filters: RunFilters) -> RunTotals:
    """Runs, tokens and cost (USD) of every run the filters select, not only one page."""
    with database.connect() as connection:
        conditions = _run_conditions(filters, connection.dialect.name)
        postgres = connection.dialect.name == "postgresql"
        sums = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(llm_logs.c.total_input_tokens), 0),
                sa.func.coalesce(sa.func.sum(llm_logs.c.total_output_tokens), 0),
                sa.func.coalesce(sa.func.sum(llm_logs.c.cache_read_tokens), 0),
                sa.func.count(llm_logs.c.total_cost),
                sa.func.sum(llm_logs.c.total_cost) if postgres else sa.null(),
            ).where(*conditions)
        ).one()
        if postgres:
            cost = sums[5] or Decimal(0)
        else:
            # SQLite keeps costs as decimal text and its SUM would round through REAL: add them exactly here.
            cost = sum(
                (Decimal(value) for value in connection.scalars(
                    sa.select(sa.cast(llm_logs.c.total_cost, sa.String)).where(*conditions, llm_logs.c.total_cost.is_not(None))
                )),
                Decimal(0),
            )
    runs, input_tokens, output_tokens, cache_read, priced = sums[:5]
    return RunTotals(
        runs=runs,
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cache_read_tokens=int(cache_read),
        total_cost=cost,
        unpriced_runs=runs - priced,
    )


def _distinct_values(connection: Connection, column: sa.Column[Any]) -> list[str]:
    """Distinct non-NULL values of an indexed column by hopping through its index (a loose index scan).

    A plain DISTINCT reads every row; this reads one index entry per distinct value, so the
    sidebar's options stay instant on 100,000 runs.
    """
    preparer = connection.dialect.identifier_preparer
    table, name = preparer.quote(column.table.name), preparer.quote(column.name)
    statement = sa.text(
        f"WITH RECURSIVE distinct_values(value) AS ("
        f" SELECT (SELECT {name} FROM {table} WHERE {name} IS NOT NULL ORDER BY {name} LIMIT 1)"
        f" UNION ALL"
        f" SELECT (SELECT {name} FROM {table} WHERE {name} > distinct_values.value ORDER BY {name} LIMIT 1)"
        f" FROM distinct_values WHERE distinct_values.value IS NOT NULL"
        f") SELECT value FROM distinct_values WHERE value IS NOT NULL"
    )
    return list(connection.scalars(statement))


def filter_options(database: Database) -> FilterOptions:
    with database.connect() as connection:
        return FilterOptions(
            providers=_distinct_values(connection, llm_logs.c.provider),
            models=_distinct_values(connection, llm_logs.c.model),
            agents=_distinct_values(connection, llm_logs.c.agent_name),
            check_names=_distinct_values(connection, eval_checks.c.check_name),
        )


def run_detail(database: Database, log_id: int) -> dict[str, Any] | None:
    """A run's row without raw_json (see stored_raw_json; Database.get_log has both)."""
    with database.connect() as connection:
        row = connection.execute(sa.select(*(column for column in llm_logs.c if column is not llm_logs.c.raw_json)).where(llm_logs.c.id == log_id)).first()
        return dict(row._mapping) if row else None


def stored_raw_json(database: Database, log_id: int) -> str | None:
    with database.connect() as connection:
        return connection.scalar(sa.select(llm_logs.c.raw_json).where(llm_logs.c.id == log_id))


def run_checks(database: Database, log_id: int) -> list[dict[str, Any]]:
    """Every check row of a run, newest evaluator version first, then by check name."""
    with database.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(sa.select(eval_checks).where(eval_checks.c.log_id == log_id))]
    rows.sort(key=lambda row: row["check_name"])
    rows.sort(key=lambda row: version_sort_key(row["evaluator_version"]), reverse=True)
    return rows


def run_feedback(database: Database, log_id: int) -> list[dict[str, Any]]:
    """The feedback history of a run, newest first."""
    return list_feedback_rows(database, log_id=log_id, limit=None)


def has_runs_table(database: Database) -> bool:
    """Whether the schema exists (the app only reads; the first ingest creates it)."""
    with database.connect() as connection:
        return sa.inspect(connection).has_table(llm_logs.name)


# ---------------------------------------------------------------------------- history: daily tables, re-pricing, re-evaluation
#
# The history assets work on windows of run days (UTC, [start, end) on llm_logs.run_started_at).
# Every rewrite is one transaction, and rewrites of the same table are serialized (an advisory lock
# on Postgres, BEGIN IMMEDIATE on SQLite), so two overlapping backfills can never both delete and
# then both insert. Functions take a Database so that this section stays apart from the class.

daily_usage = sa.Table(
    "daily_usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),  # UTC day of run_started_at
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("agent_name", SafeText),
    sa.Column("runs", sa.Integer, nullable=False),
    sa.Column("priced_runs", sa.Integer, nullable=False),
    sa.Column("unpriced_runs", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    # Sums over the priced runs only: an unpriced run adds to unpriced_runs, never a made-up $0.
    sa.Column("input_cost", Money, nullable=False),
    sa.Column("output_cost", Money, nullable=False),
    sa.Column("total_cost", Money, nullable=False),
    sa.Column("duration_p50_seconds", sa.Float),
    sa.Column("duration_p95_seconds", sa.Float),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.Index("ix_daily_usage_day", "day"),
)

daily_eval_summary = sa.Table(
    "daily_eval_summary",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("evaluator_version", sa.String(16), nullable=False),
    sa.Column("runs", sa.Integer, nullable=False),  # runs with a row for this check and version
    sa.Column("applicable", sa.Integer, nullable=False),  # of which passed is not NULL
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("pass_rate", sa.Float),  # passed / applicable; NULL when nothing applied
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("day", "check_name", "evaluator_version", name="uq_daily_eval_summary_day_check_version"),
)

daily_feedback = sa.Table(
    "daily_feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),  # UTC day of the run the feedback is about
    sa.Column("feedback", sa.Integer, nullable=False),
    sa.Column("good", sa.Integer, nullable=False),
    sa.Column("bad", sa.Integer, nullable=False),
    sa.Column("good_pct", sa.Float),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("day", name="uq_daily_feedback_day"),
)

DAILY_TABLES = {table.name: table for table in (daily_usage, daily_eval_summary, daily_feedback)}


def _runs_in_window(
    connection: Connection, columns: Sequence[sa.ColumnElement[Any]], start: datetime, end: datetime, chunk_size: int
) -> Iterator[Sequence[sa.Row[Any]]]:
    """Runs started in [start, end), `chunk_size` at a time by id (the first column must be the id),
    so a month of raw logs never sits in memory at once."""
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(*columns)
            .where(_in_window(llm_logs.c.run_started_at, start, end), llm_logs.c.id > last_id)
            .order_by(llm_logs.c.id)
            .limit(chunk_size)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        yield rows


def _in_window(column: sa.ColumnElement[Any], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


def _serialize_rewrites(connection: Connection, name: str) -> None:
    # SQLite already holds the write lock from BEGIN IMMEDIATE; Postgres needs an explicit lock
    # because READ COMMITTED lets two delete-then-insert transactions interleave.
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(f"llm_monitoring:{name}".encode()) & 0x7FFFFFFF
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def same_money(left: Decimal | None, right: Decimal | None) -> bool:
    if left is None or right is None:
        return left is None and right is None
    # Postgres keeps 12 decimals (NUMERIC(24, 12)); compare at that precision.
    step = Decimal("1e-12")
    return Decimal(left).quantize(step) == Decimal(right).quantize(step)


@dataclass(frozen=True)
class PricingRow:
    """What pricing a stored run needs, and what it was priced at."""

    id: int
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    run_started_at: datetime | None
    input_cost: Decimal | None
    output_cost: Decimal | None
    total_cost: Decimal | None
    pricing_status: str | None
    price_data_version: str | None
    value_notes: str | None  # JSON array, see llm_logs.value_notes

    def differs_from(self, price: PriceResult) -> bool:
        return not (
            same_money(self.input_cost, price.input_cost)
            and same_money(self.output_cost, price.output_cost)
            and same_money(self.total_cost, price.total_cost)
            and self.pricing_status == price.status
            and self.price_data_version == price.price_data_version
        )


_PRICING_COLUMNS = (
    llm_logs.c.id,
    llm_logs.c.provider,
    llm_logs.c.model,
    llm_logs.c.total_input_tokens,
    llm_logs.c.total_output_tokens,
    llm_logs.c.cache_read_tokens,
    llm_logs.c.cache_write_tokens,
    llm_logs.c.run_started_at,
    llm_logs.c.input_cost,
    llm_logs.c.output_cost,
    llm_logs.c.total_cost,
    llm_logs.c.pricing_status,
    llm_logs.c.price_data_version,
    llm_logs.c.value_notes,
)


def reprice_window(
    database: Database,
    start: datetime,
    end: datetime,
    reprice: Callable[[PricingRow], PriceResult],
    *,
    chunk_size: int = 2000,
) -> tuple[int, int]:
    """Re-price every run started in [start, end) in one transaction; returns (runs seen, rows updated).

    Only rows whose costs, status or price-data version differ are written. Rows are read in id
    order, a chunk at a time, so memory stays bounded for any window.
    """
    update = (
        sa.update(llm_logs)
        .where(llm_logs.c.id == sa.bindparam("b_id"))
        .values(
            input_cost=sa.bindparam("b_input_cost", type_=Money()),
            output_cost=sa.bindparam("b_output_cost", type_=Money()),
            total_cost=sa.bindparam("b_total_cost", type_=Money()),
            pricing_status=sa.bindparam("b_status"),
            price_data_version=sa.bindparam("b_version"),
        )
    )
    seen = updated = 0
    with database.transaction() as connection:
        _serialize_rewrites(connection, "llm_logs.costs")
        for rows in _runs_in_window(connection, _PRICING_COLUMNS, start, end, chunk_size):
            seen += len(rows)
            changes = []
            for row in rows:
                stored = PricingRow(*row)
                price = reprice(stored)
                if stored.differs_from(price):
                    changes.append({
                        "b_id": stored.id,
                        "b_input_cost": price.input_cost,
                        "b_output_cost": price.output_cost,
                        "b_total_cost": price.total_cost,
                        "b_status": price.status,
                        "b_version": price.price_data_version,
                    })
            if changes:
                connection.execute(update, changes)
                updated += len(changes)
    return seen, updated


@dataclass(frozen=True)
class StoredRunLog:
    """A stored run's raw log, for re-parsing and re-evaluation."""

    id: int
    raw_json: str | None
    run_started_at: datetime | None


@dataclass
class ReevaluationOutcome:
    runs: int = 0
    evaluated: int = 0
    skipped: int = 0  # no stored log, or it no longer parses: its rows are left as they were
    rows_deleted: int = 0
    rows_inserted: int = 0
    verdicts_changed: int = 0  # (run, check) pairs whose verdict differs from this version's previous row
    other_version_rows: int = 0  # rows of other evaluator versions kept for the window's runs


def replace_checks_in_window(
    database: Database,
    start: datetime,
    end: datetime,
    evaluate: Callable[[StoredRunLog], Sequence[CheckResult] | None],
    evaluator_version: str,
    *,
    keep_other_versions: bool = True,
    chunk_size: int = 500,
) -> ReevaluationOutcome:
    """Re-evaluate every run started in [start, end) and replace its rows of `evaluator_version`.

    One transaction: readers see the old rows or the new ones, never a mix, and never both.
    Rows of other versions stay unless `keep_other_versions` is False.
    """
    outcome = ReevaluationOutcome()
    now = datetime.now(timezone.utc)
    window = _in_window(llm_logs.c.run_started_at, start, end)
    with database.transaction() as connection:
        _serialize_rewrites(connection, "eval_checks")
        columns = (llm_logs.c.id, llm_logs.c.raw_json, llm_logs.c.run_started_at)
        for rows in _runs_in_window(connection, columns, start, end, chunk_size):
            outcome.runs += len(rows)
            new_rows: list[tuple[Any, ...]] = []
            evaluated_ids: list[int] = []
            for row in rows:
                checks = evaluate(StoredRunLog(*row))
                if checks is None:
                    outcome.skipped += 1
                    continue
                evaluated_ids.append(row[0])
                new_rows += check_values(row[0], checks, evaluator_version, now)
            if not evaluated_ids:
                continue
            previous = {
                (log_id, name): passed
                for log_id, name, passed in connection.execute(
                    sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.passed).where(
                        eval_checks.c.log_id.in_(evaluated_ids), eval_checks.c.evaluator_version == evaluator_version
                    )
                )
            }
            delete = sa.delete(eval_checks).where(eval_checks.c.log_id.in_(evaluated_ids))
            if keep_other_versions:
                delete = delete.where(eval_checks.c.evaluator_version == evaluator_version)
            outcome.rows_deleted += connection.execute(delete).rowcount
            _insert_rows(connection, eval_checks, CHECK_COLUMNS, new_rows)
            outcome.rows_inserted += len(new_rows)
            outcome.evaluated += len(evaluated_ids)
            outcome.verdicts_changed += sum(
                1 for log_id, name, passed, *_ in new_rows if (log_id, name) not in previous
                or previous[(log_id, name)] != passed
            )
        outcome.other_version_rows = connection.scalar(
            sa.select(sa.func.count())
            .select_from(eval_checks.join(llm_logs, eval_checks.c.log_id == llm_logs.c.id))
            .where(window, eval_checks.c.evaluator_version != evaluator_version)
        ) or 0
    return outcome


# -------------------------------------------------------------- reads for the daily aggregates

USAGE_COLUMNS = (
    "run_started_at", "provider", "model", "agent_name", "total_input_tokens", "total_output_tokens",
    "cache_read_tokens", "cache_write_tokens", "input_cost", "output_cost", "total_cost", "duration_seconds",
)


def usage_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Runs started in [start, end), with the columns of USAGE_COLUMNS."""
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(*(llm_logs.c[name] for name in USAGE_COLUMNS)).where(
                    _in_window(llm_logs.c.run_started_at, start, end)
                )
            )
        ]


EVAL_COLUMNS = ("run_started_at", "check_name", "evaluator_version", "passed")


def eval_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Check rows (every evaluator version) of runs started in [start, end), with EVAL_COLUMNS."""
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(llm_logs.c.run_started_at, eval_checks.c.check_name, eval_checks.c.evaluator_version, eval_checks.c.passed)
                .select_from(eval_checks.join(llm_logs, eval_checks.c.log_id == llm_logs.c.id))
                .where(_in_window(llm_logs.c.run_started_at, start, end))
            )
        ]


FEEDBACK_COLUMNS = ("run_started_at", "is_good")


def feedback_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Feedback on runs started in [start, end), with FEEDBACK_COLUMNS."""
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(llm_logs.c.run_started_at, feedback.c.is_good)
                .select_from(feedback.join(llm_logs, feedback.c.log_id == llm_logs.c.id))
                .where(_in_window(llm_logs.c.run_started_at, start, end))
            )
        ]


def replace_daily_rows(
    database: Database, table_name: str, first_day: date, end_day: date, build: Callable[[], Sequence[dict[str, Any]]]
) -> tuple[int, list[dict[str, Any]]]:
    """Replace the rows of days [first_day, end_day) of a daily table with those `build` returns; returns
    how many rows were deleted, and the new rows.

    `build` reads the runs only once this table's rewrite lock is held: of two overlapping rebuilds
    (two ingest runs storing runs of the same day), the later one then sees every run the earlier
    one saw, so a stale rebuild never overwrites a fresher one.
    """
    table = DAILY_TABLES[table_name]
    with database.transaction() as connection:
        _serialize_rewrites(connection, table_name)
        rows = list(build())
        deleted = connection.execute(
            sa.delete(table).where(table.c.day >= first_day, table.c.day < end_day)
        ).rowcount
        if rows:
            connection.execute(sa.insert(table), rows)
    return deleted, rows


def daily_rows(database: Database, table_name: str, first_day: date, end_day: date) -> list[dict[str, Any]]:
    table = DAILY_TABLES[table_name]
    with database.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(table).where(table.c.day >= first_day, table.c.day < end_day).order_by(table.c.day, table.c.id)
            )
        ]


def latest_daily_day(database: Database, table_name: str) -> date | None:
    table = DAILY_TABLES[table_name]
    with database.connect() as connection:
        return connection.scalar(sa.select(sa.func.max(table.c.day)))


# -------------------------------------------------------------- reads for the aggregates sensor and the checks


def run_days_in_id_ranges(database: Database, ranges: Sequence[tuple[int, int]]) -> set[date]:
    """UTC days of the runs with ids in any of the [first, last] ranges: the days ingest runs stored."""
    if not ranges:
        return set()
    with database.connect() as connection:
        stamps = connection.scalars(
            sa.select(llm_logs.c.run_started_at)
            .where(sa.or_(*(llm_logs.c.id.between(first, last) for first, last in ranges)), llm_logs.c.run_started_at.is_not(None))
            .distinct()
        )
        return {stamp.date() for stamp in stamps}


def run_day_span(database: Database) -> tuple[date, date] | None:
    """First and last UTC day with runs, or None for an empty table."""
    with database.connect() as connection:
        first, last = connection.execute(
            sa.select(sa.func.min(llm_logs.c.run_started_at), sa.func.max(llm_logs.c.run_started_at))
        ).one()
    if first is None or last is None:
        return None
    return first.date(), last.date()


def feedback_changes_since(database: Database, since: datetime | None) -> tuple[set[date], datetime | None]:
    """Run days of the feedback created, updated or deleted after `since`, and the latest such change."""
    changed = sa.select(llm_logs.c.run_started_at, feedback.c.created_at, feedback.c.updated_at).select_from(
        feedback.join(llm_logs, feedback.c.log_id == llm_logs.c.id)
    )
    deleted = sa.select(feedback_deletions.c.run_started_at, feedback_deletions.c.deleted_at, sa.null())
    if since is not None:
        changed = changed.where(sa.or_(feedback.c.created_at > since, feedback.c.updated_at > since))
        deleted = deleted.where(feedback_deletions.c.deleted_at > since)
    days: set[date] = set()
    latest = since
    with database.connect() as connection:
        for run_started_at, first_stamp, second_stamp in [*connection.execute(changed), *connection.execute(deleted)]:
            if run_started_at is not None:
                days.add(run_started_at.date())
            stamp = max(moment for moment in (first_stamp, second_stamp) if moment is not None)
            latest = stamp if latest is None or stamp > latest else latest
    return days, latest


def ingest_errors_since(database: Database, since: datetime) -> list[dict[str, Any]]:
    """Unresolved ingest errors (files that failed to parse) seen at or after `since`, newest first."""
    with database.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(
                    ingest_errors.c.filepath, ingest_errors.c.content_hash, ingest_errors.c.error,
                    ingest_errors.c.last_seen, ingest_errors.c.occurrences,
                )
                .where(ingest_errors.c.last_seen >= since, ingest_errors.c.resolved_at.is_(None))
                .order_by(ingest_errors.c.last_seen.desc())
            )
        ]


def runs_missing_checks(
    database: Database, evaluator_version: str, check_names: Sequence[str], start: datetime | None = None, end: datetime | None = None
) -> list[tuple[int, datetime | None]]:
    """Runs (id, run_started_at) lacking a row of `evaluator_version` for any of `check_names`."""
    present = (
        sa.select(eval_checks.c.log_id, sa.func.count(sa.distinct(eval_checks.c.check_name)).label("checks"))
        .where(eval_checks.c.evaluator_version == evaluator_version, eval_checks.c.check_name.in_(list(check_names)))
    )
    if start is not None and end is not None:
        # Count the window's runs only: the gate runs after every ingest, the table holds every run.
        present = present.where(eval_checks.c.log_id.in_(sa.select(llm_logs.c.id).where(_in_window(llm_logs.c.run_started_at, start, end))))
    present = present.group_by(eval_checks.c.log_id).subquery()
    query = (
        sa.select(llm_logs.c.id, llm_logs.c.run_started_at)
        .select_from(llm_logs.outerjoin(present, present.c.log_id == llm_logs.c.id))
        .where(sa.func.coalesce(present.c.checks, 0) < len(check_names))
        .order_by(llm_logs.c.run_started_at)
    )
    if start is not None and end is not None:
        query = query.where(_in_window(llm_logs.c.run_started_at, start, end))
    with database.connect() as connection:
        return [(log_id, started) for log_id, started in connection.execute(query)]


# ---------------------------------------------------------------------------- generated (fake) data
# llm_monitoring/fake_data.py stores its runs through store_runs with origin "fake"; this deletes them.


def purge_origin(database: Database, origin: str) -> dict[str, int]:
    """Delete the runs of one origin with their checks and feedback, in one transaction; rows deleted per table."""
    runs = sa.select(llm_logs.c.id).where(llm_logs.c.origin == origin).scalar_subquery()
    with database.transaction() as connection:
        # Children first and explicitly: a SQLite file created without the foreign-key pragma has no cascade.
        deleted_feedback = connection.execute(sa.delete(feedback).where(feedback.c.log_id.in_(runs))).rowcount
        deleted_checks = connection.execute(sa.delete(eval_checks).where(eval_checks.c.log_id.in_(runs))).rowcount
        deleted_runs = connection.execute(sa.delete(llm_logs).where(llm_logs.c.origin == origin)).rowcount
    return {"llm_logs": deleted_runs, "eval_checks": deleted_checks, "feedback": deleted_feedback}
