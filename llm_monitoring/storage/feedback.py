"""Feedback rows: writes for llm_monitoring/feedback.py, and the changes the aggregates sensor reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.storage.engine import Database, select_in
from llm_monitoring.storage.schema import feedback, feedback_deletions, llm_logs


class MissingRuns(LookupError):
    """Feedback names runs that are not stored; nothing was written."""

    def __init__(self, log_ids: Iterable[int]) -> None:
        self.log_ids = sorted(set(log_ids))
        super().__init__(", ".join(f"#{log_id}" for log_id in self.log_ids))


def existing_log_ids(database: Database, log_ids: Iterable[int]) -> set[int]:
    with database.connect() as connection:
        return _existing_log_ids(connection, log_ids)


def _existing_log_ids(connection: Connection, log_ids: Iterable[int]) -> set[int]:
    return {row.id for row in select_in(connection, sa.select(llm_logs.c.id), llm_logs.c.id, log_ids)}


def insert_feedback(database: Database, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert feedback rows in one transaction and return their ids in order; all or nothing.

    Raises MissingRuns (and stores nothing) when any row names a run that is not stored.
    """
    if not rows:
        return []
    now = datetime.now(UTC)
    values = [{**row, "created_at": row.get("created_at") or now, "updated_at": None} for row in rows]
    wanted = {row["log_id"] for row in values}
    try:
        with database.transaction() as connection:
            missing = wanted - _existing_log_ids(connection, wanted)
            if missing:
                raise MissingRuns(missing)
            result = connection.execute(sa.insert(feedback).returning(feedback.c.id, sort_by_parameter_order=True), values)
            return list(result.scalars())
    except sa.exc.IntegrityError:
        # The run was deleted between the check and the insert: the foreign key refused the row.
        raise MissingRuns(wanted - existing_log_ids(database, wanted)) from None


def update_feedback_row(database: Database, feedback_id: int, values: dict[str, Any]) -> dict[str, Any] | None:
    """Change some fields of one feedback row and stamp updated_at; None when the row does not exist."""
    with database.transaction() as connection:
        result = connection.execute(
            sa.update(feedback).where(feedback.c.id == feedback_id).values(**values, updated_at=datetime.now(UTC)).returning(*feedback.c)
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
                feedback_id=feedback_id, log_id=found.log_id, run_started_at=found.run_started_at, deleted_at=datetime.now(UTC)
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
        return {tuple(row) for row in select_in(connection, sa.select(*columns), feedback.c.log_id, log_ids)}


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
