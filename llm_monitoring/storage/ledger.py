"""The ingest ledger: which files the ingest moved (processed_files) and which failed (ingest_errors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llm_monitoring.storage.bulk import insert_rows
from llm_monitoring.storage.engine import Database, select_in
from llm_monitoring.storage.schema import ingest_errors, processed_files


def known_processed(database: Database, names: Sequence[str]) -> set[str]:
    """Which of `names` (relative to the log folder) the ingest gave to files it moved."""
    found: set[str] = set()
    if not names:
        return found
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(processed_files.name):
            return found  # a database the ingest never wrote to has processed nothing
        if connection.dialect.name == "postgresql":
            column = processed_files.c.processed_as
            found.update(
                connection.scalars(sa.select(column).where(column == sa.func.any(sa.literal(list(names), postgresql.ARRAY(sa.Text)))))
            )
            return found
        column = processed_files.c.processed_as
        found.update(row.processed_as for row in select_in(connection, sa.select(column), column, names))
    return found


def record_processed(database: Database, moves: Sequence[tuple[str, str, str]]) -> None:
    """Record (name, processed_as, content_hash) for files moved after their batch committed."""
    if not moves:
        return
    now = datetime.now(UTC)
    with database.transaction() as connection:
        columns = ("name", "processed_as", "content_hash", "processed_at")
        insert_rows(connection, processed_files, columns, [(*move, now) for move in moves])


def record_ingest_error(database: Database, filepath: str, content_hash: str, error: str, quarantined_as: str | None) -> None:
    now = datetime.now(UTC)
    values = {
        "filepath": filepath,
        "content_hash": content_hash,
        "error": error,
        "quarantined_as": quarantined_as,
        "first_seen": now,
        "last_seen": now,
        "occurrences": 1,
    }
    with database.transaction() as connection:
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


def note_quarantined(database: Database, content_hash: str, quarantined_as: str) -> None:
    with database.transaction() as connection:
        connection.execute(
            sa.update(ingest_errors).where(ingest_errors.c.content_hash == content_hash).values(quarantined_as=quarantined_as)
        )


def open_ingest_errors(database: Database) -> list[dict[str, Any]]:
    with database.connect() as connection:
        rows = connection.execute(sa.select(ingest_errors).where(ingest_errors.c.resolved_at.is_(None)).order_by(ingest_errors.c.id))
        return [dict(row._mapping) for row in rows]


def resolve_ingest_errors(database: Database, content_hashes: Iterable[str]) -> None:
    hashes = list(content_hashes)
    if not hashes:
        return
    with database.transaction() as connection:
        connection.execute(sa.update(ingest_errors).where(ingest_errors.c.content_hash.in_(hashes)).values(resolved_at=datetime.now(UTC)))


def ingest_errors_since(database: Database, since: datetime) -> list[dict[str, Any]]:
    """Unresolved ingest errors (files that failed to parse) seen at or after `since`, newest first."""
    with database.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(
                    ingest_errors.c.filepath,
                    ingest_errors.c.content_hash,
                    ingest_errors.c.error,
                    ingest_errors.c.last_seen,
                    ingest_errors.c.occurrences,
                )
                .where(ingest_errors.c.last_seen >= since, ingest_errors.c.resolved_at.is_(None))
                .order_by(ingest_errors.c.last_seen.desc())
            )
        ]
