"""Alerts of failed quality gates: recorded once per gate and failing day, delivered to ALERT_WEBHOOK_URL.

The `alerts` table is an outbox. A gate's evaluation records one row per (asset, gate, subject) it
fails on unless the row exists, so a day is alerted once whatever evaluates it again (every ingest
run, a backfill, the UI's Execute button). The alerts sensor delivers the due rows: it takes a
lease on them (next_attempt_at moves past the time a delivery can take), POSTs one message per gate
and run, and marks them sent. A failed POST is retried within the tick after 0.5 s and 1 s, then
on later ticks after 30 s, 1, 2, 4 ... minutes, at most an hour apart, until it succeeds; the run
that recorded the alert never waits for the webhook. A crash between a successful POST and its mark
would send the message again when the lease ends; the payload's `alert_keys` let a receiver drop
such a repeat.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_monitoring.config import AlertSettings
from llm_monitoring.core.alerts import GateAlert, headline, merge, message, run_url
from llm_monitoring.core.wording import plural
from llm_monitoring.storage.alerts import (
    alert_rows,
    alerts_by_id,
    claim_alerts,
    due_alerts,
    mark_alerts_failed,
    mark_alerts_sent,
    pending_alerts,
    record_alert,
)
from llm_monitoring.storage.engine import Database

__all__ = ["LEASE", "AlertDeliveryError", "Delivery", "alert_rows", "backoff", "deliver_due", "destination", "post_json", "record"]

logger = logging.getLogger("llm_monitoring.alerts")

LEASE = timedelta(minutes=2)
RETRY_DELAYS_IN_TICK = (0.5, 1.0)
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
MAX_ROWS_PER_TICK = 500
TICK_BUDGET_SECONDS = 30.0  # well inside Dagster's 60 s sensor timeout


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept a message; the text names its host, never its secret path."""


def destination(url: str) -> str:
    """The webhook's scheme and host: its path often is the secret (Slack's hooks.slack.com/services/...)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unreadable URL"
    if not parts.scheme or not parts.hostname:
        return "a URL without scheme or host"
    return f"{parts.scheme}://{parts.hostname}{port}"


def record(database: Database, alert: GateAlert, now: datetime | None = None) -> list[str]:
    """Store the alert's failures that were not alerted before; returns their subjects."""
    return record_alert(database, alert, now or datetime.now(UTC))


# ---------------------------------------------------------------------------- delivery


@dataclass
class Delivery:
    """What one delivery pass did."""

    sent: list[GateAlert] = field(default_factory=list)
    failed: list[tuple[GateAlert, str]] = field(default_factory=list)
    pending: int = 0  # rows still unsent after the pass
    next_attempt_at: datetime | None = None

    def line(self, webhook: str) -> str:
        parts = []
        if self.sent:
            parts.append(f"sent {plural(len(self.sent), 'alert')} to {webhook}: " + "; ".join(headline(alert) for alert in self.sent))
        for alert, error in self.failed:
            parts.append(f"could not send {headline(alert)!r}: {error}")
        if self.pending:
            retry = f", next attempt at {self.next_attempt_at:%H:%M:%S} UTC" if self.next_attempt_at else ""
            parts.append(f"{plural(self.pending, 'alert row')} waiting{retry}")
        return "; ".join(parts) or f"no alerts to send to {webhook}"


Post = Callable[[str, dict[str, Any], float], None]


def post_json(url: str, body: dict[str, Any], timeout: float) -> None:
    """POST `body` as JSON; any answer but 2xx raises AlertDeliveryError."""
    try:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "llm-monitoring-alerts"},
        )
    except ValueError:  # its message would repeat the whole URL, secret path included
        raise AlertDeliveryError(f"ALERT_WEBHOOK_URL is not a URL to post to: {destination(url)}") from None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AlertDeliveryError(f"{destination(url)} answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:  # ValueError: http.client.InvalidURL and kin
        reason = getattr(error, "reason", None) or type(error).__name__
        raise AlertDeliveryError(f"{destination(url)} unreachable: {reason}") from None


def deliver_due(
    database: Database,
    settings: AlertSettings,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    post: Post = post_json,
    sleep: Callable[[float], None] = time.sleep,
    budget_seconds: float = TICK_BUDGET_SECONDS,
) -> Delivery:
    """Send every due alert, one message per gate and run; stop at the first message the webhook refuses."""
    delivery = Delivery()
    started = time.monotonic()
    for ids, alert in _due_groups(database, now()):
        if time.monotonic() - started > budget_seconds:
            break
        claimed = claim_alerts(database, ids, now(), LEASE)
        if not claimed:
            continue  # another sender took them
        if len(claimed) < len(ids):
            alert = merge(alerts_by_id(database, claimed))
        body = message(alert, run_url(settings.webserver_url, alert.run_id))
        error = _post_with_retries(post, settings, body, sleep)
        if error is None:
            mark_alerts_sent(database, claimed, now())
            delivery.sent.append(alert)
            continue
        mark_alerts_failed(database, claimed, now(), error, backoff)
        delivery.failed.append((alert, error))
        logger.warning("alert %r not delivered: %s", headline(alert), error)
        break  # the webhook is down: the other messages wait for the next attempt too
    delivery.pending, delivery.next_attempt_at = pending_alerts(database)
    return delivery


def _post_with_retries(post: Post, settings: AlertSettings, body: dict[str, Any], sleep: Callable[[float], None]) -> str | None:
    error = ""
    for delay in (0.0, *RETRY_DELAYS_IN_TICK):
        sleep(delay)
        try:
            post(settings.webhook_url, body, settings.timeout_seconds)
            return None
        except AlertDeliveryError as failure:
            error = str(failure)
    return error


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: 30 s, 1, 2, 4 ... minutes, at most an hour."""
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def _due_groups(database: Database, now: datetime) -> list[tuple[list[int], GateAlert]]:
    """The due rows, one group (and one message) per gate and run."""
    groups: dict[tuple[str, str, str | None], list[tuple[int, GateAlert]]] = {}
    for row_id, alert in due_alerts(database, now, MAX_ROWS_PER_TICK):
        groups.setdefault((alert.asset, alert.gate, alert.run_id), []).append((row_id, alert))
    return [([row_id for row_id, _ in group], merge([alert for _, alert in group])) for group in groups.values()]
