"""The ledger of bucket objects (source_objects): which versions of which keys the ingest is done with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llm_monitoring.storage.engine import Database, select_in
from llm_monitoring.storage.schema import ingest_errors, source_objects


@dataclass(frozen=True)
class ObjectRecord:
    key: str
    etag: str
    version_id: str | None
    size: int
    content_hash: str
    outcome: str  # "stored" or "quarantined"
    location: str | None = None


def known_objects(database: Database, bucket: str, versions: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (key, etag) pairs of `bucket` the ledger holds. One query per 900 keys."""
    wanted = set(versions)
    if not wanted:
        return set()
    columns = sa.select(source_objects.c.key, source_objects.c.etag).where(source_objects.c.bucket == bucket)
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(source_objects.name):
            return set()  # a database the ingest never wrote to holds no object
        if connection.dialect.name == "postgresql":
            keys = sorted({key for key, _ in wanted})
            rows = connection.execute(columns.where(source_objects.c.key == sa.func.any(sa.literal(keys, postgresql.ARRAY(sa.Text)))))
        else:
            rows = select_in(connection, columns, source_objects.c.key, {key for key, _ in wanted})
        return {(row.key, row.etag) for row in rows} & wanted


def record_objects(database: Database, bucket: str, records: Sequence[ObjectRecord]) -> None:
    """Record finished objects; a version recorded already (a concurrent run) is left as it is."""
    if not records:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "bucket": bucket,
            "key": record.key,
            "etag": record.etag,
            "version_id": record.version_id,
            "size": record.size,
            "content_hash": record.content_hash,
            "outcome": record.outcome,
            "location": record.location,
            "recorded_at": now,
        }
        for record in records
    ]
    with database.transaction() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(insert(source_objects).on_conflict_do_nothing(index_elements=["bucket", "key", "etag"]), rows)


def quarantined_objects(database: Database, bucket: str, prefix: str) -> list[ObjectRecord]:
    """Objects under `prefix` recorded as quarantined, by key."""
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(source_objects.name):
            return []
        rows = connection.execute(
            sa.select(source_objects)
            .where(
                source_objects.c.bucket == bucket,
                source_objects.c.outcome == "quarantined",
                source_objects.c.key.startswith(prefix, autoescape=True),
            )
            .order_by(source_objects.c.key)
        )
        return [ObjectRecord(row.key, row.etag, row.version_id, row.size, row.content_hash, row.outcome, row.location) for row in rows]


def forget_quarantined(database: Database, bucket: str, records: Sequence[ObjectRecord]) -> None:
    """Take quarantined objects out of the ledger, so the next pass reads them again, and mark their
    errors resolved (one that fails again re-opens its row)."""
    if not records:
        return
    now = datetime.now(UTC)
    with database.transaction() as connection:
        for record in records:
            connection.execute(
                sa.delete(source_objects).where(
                    source_objects.c.bucket == bucket,
                    source_objects.c.key == record.key,
                    source_objects.c.etag == record.etag,
                    source_objects.c.outcome == "quarantined",
                )
            )
        hashes = sorted({record.content_hash for record in records})
        connection.execute(sa.update(ingest_errors).where(ingest_errors.c.content_hash.in_(hashes)).values(resolved_at=now))


def count_objects(database: Database, bucket: str, outcome: str | None = None) -> int:
    with database.connect() as connection:
        statement = sa.select(sa.func.count()).select_from(source_objects).where(source_objects.c.bucket == bucket)
        if outcome:
            statement = statement.where(source_objects.c.outcome == outcome)
        return int(connection.scalar(statement) or 0)
