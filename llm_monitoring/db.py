"""Storage: SQLAlchemy 2 Core tables, schema upgrade, batched writes and reads, on SQLite and Postgres.

This is the one module that knows SQL. Everything else hands it records and gets records back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from llm_monitoring.config import get_settings
from llm_monitoring.core.records import CheckResult, LogRecord, PriceResult


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it with its password masked."""


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
    # "file" for ingested logs, "fake" for generated demo data (deletable as a set).
    sa.Column("origin", sa.String(16), nullable=False, server_default="file"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("content_hash", name="uq_llm_logs_content_hash"),
    sa.Index("ix_llm_logs_run_started_at", "run_started_at"),
    sa.Index("ix_llm_logs_model_run_started_at", "model", "run_started_at"),
    sa.Index("ix_llm_logs_provider_run_started_at", "provider", "run_started_at"),
    sa.Index("ix_llm_logs_agent_name", "agent_name"),
    sa.Index("ix_llm_logs_created_at", "created_at"),
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
    sa.Index("ix_eval_checks_check_name", "check_name", "evaluator_version"),
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

# ---------------------------------------------------------------------------- URLs


def normalize_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+psycopg2://; use psycopg 3 for all of them."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@/\s]*)@", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Replace every password in URLs inside `text` with ***."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m.group('head')}***@", text)


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
            "origin": self.origin,
            "created_at": self.created_at or datetime.now(timezone.utc),
        }


@dataclass(frozen=True)
class BatchResult:
    inserted: dict[str, int]  # content hash -> new llm_logs.id
    already_stored: set[str]  # content hashes that were stored before this batch


def check_rows(log_id: int, checks: Iterable[CheckResult], evaluator_version: str, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "log_id": log_id,
            "check_name": check.check_name,
            "passed": check.passed,
            "score": check.score,
            "details": check.details,
            "evaluator_version": evaluator_version,
            "created_at": now,
        }
        for check in checks
    ]


# ---------------------------------------------------------------------------- the database


class Database:
    """The monitoring database. `Database()` reads DATABASE_URL (default: SQLite monitoring.db)."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = normalize_url(url or get_settings().database_url)
        self.engine: Engine = _create_engine(self.url, echo=echo)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; a failure to reach the database becomes DatabaseUnavailable (password masked)."""
        try:
            connection = self.engine.connect()
        except sa.exc.OperationalError as error:
            raise self.unavailable(error) from None
        with connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            if _is_connection_error(error):
                raise self.unavailable(error) from None
            raise

    def unavailable(self, error: BaseException) -> DatabaseUnavailable:
        first_line = mask_url(str(getattr(error, "orig", error) or error)).strip().splitlines()
        reason = first_line[0] if first_line else type(error).__name__
        return DatabaseUnavailable(f"database {self.display_url} is unavailable: {reason}")

    # -------------------------------------------------------------- schema

    def ensure_schema(self) -> None:
        """Create missing tables, columns and indexes; safe to call on every start."""
        with self.transaction() as connection:
            metadata.create_all(connection, checkfirst=True)
            _add_missing_columns(connection)
            if connection.dialect.name == "postgresql":
                _tune_postgres(connection)

    # -------------------------------------------------------------- ingest

    def stored_hashes(self, hashes: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return set()
        with self.connect() as connection:
            found: set[str] = set()
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start:start + 1000]
                found.update(connection.scalars(sa.select(llm_logs.c.content_hash).where(llm_logs.c.content_hash.in_(chunk))))
            return found

    def store_runs(self, runs: Sequence[RunToStore]) -> BatchResult:
        """Store runs and their checks in one transaction. Content already stored is skipped, never duplicated."""
        unique = list({run.content_hash: run for run in runs}.values())
        if not unique:
            return BatchResult({}, set())
        with self.transaction() as connection:
            inserted = self._insert_logs(connection, unique)
            now = datetime.now(timezone.utc)
            rows = [
                row
                for run in unique
                if run.content_hash in inserted
                for row in check_rows(inserted[run.content_hash], run.checks, run.evaluator_version, now)
            ]
            if rows:
                connection.execute(sa.insert(eval_checks), rows)
        return BatchResult(inserted, {run.content_hash for run in unique} - inserted.keys())

    def _insert_logs(self, connection: Connection, runs: Sequence[RunToStore]) -> dict[str, int]:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(llm_logs)
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(llm_logs.c.id, llm_logs.c.content_hash)
        )
        result = connection.execute(statement, [run.log_row() for run in runs])
        return {content_hash: log_id for log_id, content_hash in result}

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


# ---------------------------------------------------------------------------- helpers


def _create_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a writer takes the
        # lock at the start of its transaction and two processes never deadlock on an upgrade.
        sa.event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=2, max_overflow=4)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _is_connection_error(error: sa.exc.DBAPIError) -> bool:
    if getattr(error, "connection_invalidated", False):
        return True
    text = str(getattr(error, "orig", error)).lower()
    return any(
        marker in text
        for marker in (
            "connection", "terminat", "server closed", "could not connect", "does not exist",
            "timeout", "unable to open database", "shutting down", "the database system is",
        )
    )


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
