"""Retention's SQL: what is past its cutoff, its deletion in short batches, and the audit trail.

Every batch is its own transaction over a few hundred runs, so the ingest and the review app wait
at most one batch for the write lock (SQLite) or the rows (Postgres), never for the whole deletion.
A run goes with its checks and feedback; the daily tables are not touched (they keep the past).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.core.windows import first_day_from
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.rollups import forget_runs, totals_rewritten
from llm_monitoring.storage.schema import eval_checks, feedback, feedback_deletions, ingest_errors, llm_logs, processed_files, retention_log
from llm_monitoring.storage.windows import serialize_rewrites

BATCH_RUNS = 500

# The tables a run's deletion reaches, in the order they are deleted (children first: a SQLite file
# created without the foreign-key pragma has no cascade).
RUN_TABLES = ("feedback", "feedback_deletions", "eval_checks", "llm_logs")
LEDGER_TABLES = ("ingest_errors", "processed_files")


def _expired(cutoff: datetime) -> sa.ColumnElement[bool]:
    """Runs started before the cutoff; a run without a start time goes by when it was stored."""
    return sa.or_(
        llm_logs.c.run_started_at < cutoff,
        sa.and_(llm_logs.c.run_started_at.is_(None), llm_logs.c.created_at < cutoff),
    )


def _raw_to_drop(raw_cutoff: datetime, run_cutoff: datetime | None) -> sa.ColumnElement[bool]:
    condition = sa.and_(_expired(raw_cutoff), llm_logs.c.raw_json.is_not(None))
    return condition if run_cutoff is None else sa.and_(condition, ~_expired(run_cutoff))


def count_expired(database: Database, run_cutoff: datetime | None, raw_cutoff: datetime | None) -> dict[str, int]:
    """What a retention with these cutoffs would delete: rows per table of RUN_TABLES, resolved
    ingest errors, and `raw_logs` (raw logs dropped from runs that stay)."""
    counts = dict.fromkeys((*RUN_TABLES, "ingest_errors"), 0)
    counts["raw_logs"] = 0
    with database.connect() as connection:
        if run_cutoff is not None:
            runs = sa.select(llm_logs.c.id).where(_expired(run_cutoff))
            counts["llm_logs"] = connection.scalar(sa.select(sa.func.count()).select_from(runs.subquery())) or 0
            for name, table in (("feedback", feedback), ("feedback_deletions", feedback_deletions), ("eval_checks", eval_checks)):
                counts[name] = connection.scalar(sa.select(sa.func.count()).where(table.c.log_id.in_(runs))) or 0
            counts["ingest_errors"] = connection.scalar(sa.select(sa.func.count()).where(_resolved_before(run_cutoff))) or 0
        if raw_cutoff is not None:
            counts["raw_logs"] = connection.scalar(sa.select(sa.func.count()).where(_raw_to_drop(raw_cutoff, run_cutoff))) or 0
    return counts


def delete_runs_before(database: Database, cutoff: datetime, *, batch_size: int = BATCH_RUNS) -> dict[str, int]:
    """Delete the runs started before `cutoff` with their checks and feedback, `batch_size` runs per
    transaction; rows deleted per table of RUN_TABLES."""
    deleted = dict.fromkeys(RUN_TABLES, 0)
    while True:
        with database.transaction() as connection:
            # A re-evaluation inserting checks of these runs would fail on their foreign key: take turns.
            serialize_rewrites(connection, "eval_checks")
            ids = list(connection.scalars(sa.select(llm_logs.c.id).where(_expired(cutoff)).order_by(llm_logs.c.id).limit(batch_size)))
            if not ids:
                return deleted
            forget_runs(connection, ids)
            for name, table in (("feedback", feedback), ("feedback_deletions", feedback_deletions), ("eval_checks", eval_checks)):
                deleted[name] += connection.execute(sa.delete(table).where(table.c.log_id.in_(ids))).rowcount
            with totals_rewritten(connection, ids):
                deleted["llm_logs"] += connection.execute(sa.delete(llm_logs).where(llm_logs.c.id.in_(ids))).rowcount


def drop_raw_logs_before(database: Database, cutoff: datetime, *, batch_size: int = BATCH_RUNS) -> int:
    """Set raw_json to NULL for runs started before `cutoff`, keeping their parsed columns; how many."""
    dropped = 0
    while True:
        with database.transaction() as connection:
            ids = list(
                connection.scalars(sa.select(llm_logs.c.id).where(_raw_to_drop(cutoff, None)).order_by(llm_logs.c.id).limit(batch_size))
            )
            if not ids:
                return dropped
            dropped += connection.execute(sa.update(llm_logs).where(llm_logs.c.id.in_(ids)).values(raw_json=None)).rowcount


def _resolved_before(cutoff: datetime) -> sa.ColumnElement[bool]:
    # Open errors stay whatever their age: their files wait in quarantine for a fix.
    return sa.and_(ingest_errors.c.resolved_at.is_not(None), ingest_errors.c.last_seen < cutoff)


def delete_resolved_errors_before(database: Database, cutoff: datetime) -> int:
    with database.transaction() as connection:
        return connection.execute(sa.delete(ingest_errors).where(_resolved_before(cutoff))).rowcount


def processed_before(database: Database, cutoff: datetime, after_id: int, limit: int = BATCH_RUNS) -> list[tuple[int, str]]:
    """(id, processed_as) of processed_files rows recorded before `cutoff`, by id after `after_id`."""
    with database.connect() as connection:
        rows = connection.execute(
            sa.select(processed_files.c.id, processed_files.c.processed_as)
            .where(processed_files.c.processed_at < cutoff, processed_files.c.id > after_id)
            .order_by(processed_files.c.id)
            .limit(limit)
        )
        return [(row.id, row.processed_as) for row in rows]


def delete_processed(database: Database, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    with database.transaction() as connection:
        return connection.execute(sa.delete(processed_files).where(processed_files.c.id.in_(list(ids)))).rowcount


@dataclass(frozen=True)
class RetentionEntry:
    """One row of retention_log."""

    started_at: datetime
    finished_at: datetime
    retention_days: int | None
    run_cutoff: datetime | None
    retention_raw_days: int | None
    raw_cutoff: datetime | None
    rows_deleted: dict[str, int]
    raw_logs_dropped: int
    triggered_by: str


def record_retention(database: Database, entry: RetentionEntry) -> int:
    values: dict[str, Any] = {**vars(entry), "rows_deleted": json.dumps(entry.rows_deleted, sort_keys=True)}
    with database.transaction() as connection:
        return connection.execute(sa.insert(retention_log).values(values).returning(retention_log.c.id)).scalar_one()


def retention_entries(database: Database, limit: int = 100) -> list[RetentionEntry]:
    """The latest audit rows, newest first."""
    with database.connect() as connection:
        rows = connection.execute(sa.select(retention_log).order_by(retention_log.c.id.desc()).limit(limit)).mappings()
        return [
            RetentionEntry(
                **{name: row[name] for name in RetentionEntry.__dataclass_fields__ if name != "rows_deleted"},
                rows_deleted=json.loads(row["rows_deleted"]),
            )
            for row in rows
        ]


def first_rebuildable_day(connection: Connection) -> date | None:
    """The first day whose daily rows may be rebuilt from llm_logs: runs of the days before it were
    deleted by retention (partly, for the day of the latest cutoff), so their rows are the only record."""
    cutoff = connection.scalar(sa.select(sa.func.max(retention_log.c.run_cutoff)))
    return None if cutoff is None else first_day_from(cutoff)
