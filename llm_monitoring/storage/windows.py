"""Windows of run days (UTC, [start, end) on llm_logs.run_started_at) and the lock that serializes
rewrites of one table.

Every rewrite is one transaction, and rewrites of the same table are serialized (an advisory lock
on Postgres, BEGIN IMMEDIATE on SQLite), so two overlapping backfills can never both delete and
then both insert.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.storage.schema import llm_logs


def runs_in_window(
    connection: Connection, columns: Sequence[sa.ColumnElement[Any]], start: datetime, end: datetime, chunk_size: int
) -> Iterator[Sequence[sa.Row[Any]]]:
    """Runs started in [start, end), `chunk_size` at a time by id (the first column must be the id),
    so a month of raw logs never sits in memory at once."""
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(*columns)
            .where(in_window(llm_logs.c.run_started_at, start, end), llm_logs.c.id > last_id)
            .order_by(llm_logs.c.id)
            .limit(chunk_size)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        yield rows


def in_window(column: sa.ColumnElement[Any], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


def day_of(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[date]:
    """The UTC day of a UTCDateTime column, in SQL (SQLite stores naive UTC text)."""
    if dialect == "postgresql":
        # A literal rather than a parameter: the expression must be the same in SELECT and GROUP BY.
        return sa.cast(sa.func.timezone(sa.literal_column("'UTC'"), column), sa.Date)
    return sa.type_coerce(sa.func.date(column), sa.Date)


def serialize_rewrites(connection: Connection, name: str) -> None:
    # SQLite already holds the write lock from BEGIN IMMEDIATE; Postgres needs an explicit lock
    # because READ COMMITTED lets two delete-then-insert transactions interleave.
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(f"llm_monitoring:{name}".encode()) & 0x7FFFFFFF
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
