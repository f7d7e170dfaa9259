"""The alerts outbox: one row per (asset, gate, subject), recorded once, then leased, sent or retried.

llm_monitoring/alerts.py decides what to send and when; this module only reads and writes the rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llm_monitoring.core.alerts import Failure, GateAlert
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import alerts


def record_alert(database: Database, alert: GateAlert, now: datetime) -> list[str]:
    """Insert a row per failure not alerted before (a conflict on the key means it was); returns their subjects."""
    insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
    recorded = []
    with database.transaction() as connection:
        for failure in alert.failures:
            statement = (
                insert(alerts)
                .values(
                    asset=alert.asset,
                    gate=alert.gate,
                    subject=failure.subject,
                    run_id=alert.run_id,
                    details=json.dumps(_details(alert, failure)),
                    created_at=now,
                    next_attempt_at=now,
                )
                .on_conflict_do_nothing(index_elements=["asset", "gate", "subject"])
                .returning(alerts.c.subject)
            )
            recorded += connection.scalars(statement).all()
    return recorded


def _details(alert: GateAlert, failure: Failure) -> dict[str, Any]:
    return {
        "line": failure.line,
        "value": failure.value,
        "file": failure.file,
        "severity": alert.severity,
        "threshold": alert.threshold,
    }


def _alert_of(row: sa.Row[Any]) -> GateAlert:
    details = json.loads(row.details)
    failure = Failure(row.subject, details["line"], details.get("value"), details.get("file"))
    return GateAlert(row.gate, row.asset, details.get("severity", "WARN"), details.get("threshold"), (failure,), row.run_id)


def due_alerts(database: Database, now: datetime, limit: int) -> list[tuple[int, GateAlert]]:
    """Unsent rows whose next attempt is due, oldest first, each as (id, a one-failure alert)."""
    with database.connect() as connection:
        rows = connection.execute(
            sa.select(alerts).where(alerts.c.sent_at.is_(None), alerts.c.next_attempt_at <= now).order_by(alerts.c.id).limit(limit)
        ).all()
    return [(row.id, _alert_of(row)) for row in rows]


def alerts_by_id(database: Database, ids: list[int]) -> list[GateAlert]:
    with database.connect() as connection:
        return [_alert_of(row) for row in connection.execute(sa.select(alerts).where(alerts.c.id.in_(ids)).order_by(alerts.c.id))]


def claim_alerts(database: Database, ids: list[int], now: datetime, lease: timedelta) -> list[int]:
    """Take the lease on the rows still due; returns the ids taken (none when another sender has them)."""
    with database.transaction() as connection:
        return list(
            connection.scalars(
                sa.update(alerts)
                .where(alerts.c.id.in_(ids), alerts.c.sent_at.is_(None), alerts.c.next_attempt_at <= now)
                .values(next_attempt_at=now + lease)
                .returning(alerts.c.id)
            )
        )


def mark_alerts_sent(database: Database, ids: list[int], now: datetime) -> None:
    with database.transaction() as connection:
        connection.execute(
            sa.update(alerts).where(alerts.c.id.in_(ids)).values(sent_at=now, attempts=alerts.c.attempts + 1, last_error=None)
        )


def mark_alerts_failed(database: Database, ids: list[int], now: datetime, error: str, backoff: Callable[[int], timedelta]) -> None:
    """Count the failed attempt and set the next one `backoff(attempts)` from now."""
    with database.transaction() as connection:
        attempts = max(connection.scalars(sa.select(alerts.c.attempts).where(alerts.c.id.in_(ids))).all(), default=0) + 1
        connection.execute(
            sa.update(alerts)
            .where(alerts.c.id.in_(ids))
            .values(attempts=alerts.c.attempts + 1, next_attempt_at=now + backoff(attempts), last_error=error[:2000])
        )


def pending_alerts(database: Database) -> tuple[int, datetime | None]:
    """How many rows are unsent, and the earliest next attempt among them."""
    with database.connect() as connection:
        count, next_at = connection.execute(
            sa.select(sa.func.count(), sa.func.min(alerts.c.next_attempt_at)).where(alerts.c.sent_at.is_(None))
        ).one()
    return count, next_at


def alert_rows(database: Database) -> list[dict[str, Any]]:
    """Every alert row, oldest first."""
    with database.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(alerts).order_by(alerts.c.id))]
