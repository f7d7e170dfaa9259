"""Alert messages for failed quality gates and quarantined files, as JSON a webhook receives.

Slack-compatible: the `text` field is what Slack (and Mattermost, Rocket.Chat, Discord's Slack
endpoint, Teams workflows) show; the other fields carry the same facts for machines: the gate, its
asset, the failing days (or files), each one's value, the threshold and a link to the run.
Pure: no I/O; `llm_monitoring/alerts.py` records and sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

QUALITY_GATE = "quality_gate"
QUARANTINE = "quarantine"
MAX_LINES_IN_TEXT = 10


@dataclass(frozen=True)
class Failure:
    """One thing a gate failed on: a day (daily gates) or a quarantined file (parse failures)."""

    subject: str  # the day (YYYY-MM-DD) or the file's content hash: a gate alerts once per subject
    line: str  # one sentence saying what is wrong
    value: float | None = None  # the measured value (a share, a ratio, a drop), when there is one
    file: str | None = None  # the quarantined file's name


@dataclass(frozen=True)
class GateAlert:
    """What one evaluation of a gate newly failed on."""

    gate: str
    asset: str
    severity: str  # "WARN" or "ERROR", as the check's
    threshold: float | None
    failures: tuple[Failure, ...]
    run_id: str | None = None

    @property
    def kind(self) -> str:
        return QUARANTINE if any(failure.file for failure in self.failures) else QUALITY_GATE

    def keys(self) -> list[str]:
        """One stable key per (asset, gate, subject): a receiver can drop a message it has seen."""
        return [f"{self.asset}/{self.gate}/{failure.subject}" for failure in self.failures]


def run_url(webserver_url: str, run_id: str | None) -> str | None:
    return f"{webserver_url.rstrip('/')}/runs/{run_id}" if webserver_url and run_id else None


def headline(alert: GateAlert) -> str:
    count = len(alert.failures)
    if alert.kind == QUARANTINE:
        files = "file" if count == 1 else "files"
        return f"{count} log {files} quarantined (gate {alert.gate} on {alert.asset})"
    days = ", ".join(failure.subject for failure in alert.failures)
    return f"Quality gate {alert.gate} failed on {alert.asset} for {count} {'day' if count == 1 else 'days'}: {days}"


def message(alert: GateAlert, link: str | None = None) -> dict[str, Any]:
    """The JSON body POSTed to the webhook."""
    icon = ":rotating_light:" if alert.severity == "ERROR" else ":warning:"
    lines = [f"{icon} *{headline(alert)}*"]
    lines += [f"• {failure.line}" for failure in alert.failures[:MAX_LINES_IN_TEXT]]
    if len(alert.failures) > MAX_LINES_IN_TEXT:
        lines.append(f"• ... and {len(alert.failures) - MAX_LINES_IN_TEXT} more")
    if alert.threshold is not None:
        lines.append(f"Threshold: {alert.threshold:g}")
    if link:
        lines.append(f"<{link}|Open the run in Dagster>")
    body: dict[str, Any] = {
        "text": "\n".join(lines),
        "kind": alert.kind,
        "gate": alert.gate,
        "asset": alert.asset,
        "severity": alert.severity,
        "threshold": alert.threshold,
        "failures": [_failure_fields(failure) for failure in alert.failures],
        "run_id": alert.run_id,
        "run_url": link,
        "alert_keys": alert.keys(),
    }
    if alert.kind == QUARANTINE:
        body["files"] = [failure.file for failure in alert.failures]
    else:
        body["failing_days"] = [failure.subject for failure in alert.failures]
    return body


def _failure_fields(failure: Failure) -> dict[str, Any]:
    fields: dict[str, Any] = {"subject": failure.subject, "detail": failure.line, "value": failure.value}
    if failure.file:
        fields["file"] = failure.file
    else:
        fields["day"] = failure.subject
    return fields


def merge(alerts: Sequence[GateAlert]) -> GateAlert:
    """Alerts of one gate and run (recorded as one row per subject) as the one message they make."""
    first = alerts[0]
    failures = tuple(sorted((failure for alert in alerts for failure in alert.failures), key=lambda failure: failure.subject))
    return GateAlert(first.gate, first.asset, first.severity, first.threshold, failures, first.run_id)
