"""Alerts of failed gates: the message, recorded once per gate and day, delivered once to a real local webhook,
retried with backoff while it is down, and never repeated by later ticks or a restarted sensor."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from llm_monitoring.alerts import LEASE, AlertDeliveryError, alert_rows, backoff, deliver_due, destination, post_json, record
from llm_monitoring.config import alert_settings
from llm_monitoring.core.alerts import Failure, GateAlert, message
from llm_monitoring.defs.quality.sensors import quality_alerts_sensor
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.storage.engine import Database
from llm_monitoring_tests.history_data import check_results, unknown_model, write_logs
from llm_monitoring_tests.processes import WebhookReceiver
from llm_monitoring_tests.test_aggregates import ingest

UNPRICED = GateAlert(
    "unpriced_runs_share",
    "daily_usage",
    "WARN",
    0.05,
    (
        Failure("2026-01-10", "2026-01-10: 5 of 25 runs unpriced (20% > 5%); models: ?/mystery-model-9000", 0.2),
        Failure("2026-01-12", "2026-01-12: 2 of 2 runs unpriced (100% > 5%); models: ?/mystery-model-9000", 1.0),
    ),
    "run-1",
)


def test_message_is_slack_text_plus_the_facts_as_fields():
    body = message(UNPRICED, "http://dagster.example:3000/runs/run-1")
    assert body["text"].splitlines()[0] == (
        ":warning: *Quality gate unpriced_runs_share failed on daily_usage for 2 days: 2026-01-10, 2026-01-12*"
    )
    assert "<http://dagster.example:3000/runs/run-1|Open the run in Dagster>" in body["text"]
    assert (body["kind"], body["gate"], body["asset"], body["threshold"]) == ("quality_gate", "unpriced_runs_share", "daily_usage", 0.05)
    assert body["failing_days"] == ["2026-01-10", "2026-01-12"]
    assert [(failure["day"], failure["value"]) for failure in body["failures"]] == [("2026-01-10", 0.2), ("2026-01-12", 1.0)]
    assert body["alert_keys"] == ["daily_usage/unpriced_runs_share/2026-01-10", "daily_usage/unpriced_runs_share/2026-01-12"]
    quarantine = message(
        GateAlert("recent_parse_failures", "log_files", "WARN", 0, (Failure("ab" * 32, "x.json: truncated", file="x.json"),))
    )
    assert quarantine["kind"] == "quarantine" and quarantine["files"] == ["x.json"] and quarantine["run_url"] is None
    assert quarantine["text"].startswith(":warning: *1 log file quarantined (gate recent_parse_failures on log_files)*")


def test_backoff_doubles_from_half_a_minute_up_to_an_hour():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 8, 30)] == [30, 60, 120, 3600, 3600]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("hooks.example.com/services/T0/B0/SECRET", "ALERT_WEBHOOK_URL is not a URL to post to: a URL without scheme or host"),
        ("http://[::1/services/SECRET", "ALERT_WEBHOOK_URL is not a URL to post to: an unreadable URL"),
        ("http://127.0.0.1:1/services/SECRET", "http://127.0.0.1:1 unreachable: [Errno 111] Connection refused"),
    ],
)
def test_webhook_errors_name_the_host_never_the_secret_path(url: str, error: str):
    assert destination("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com"
    with pytest.raises(AlertDeliveryError) as raised:
        post_json(url, {"text": "x"}, 2)
    assert str(raised.value) == error


def test_each_gate_and_day_is_recorded_once(database: Database):
    now = datetime(2026, 1, 12, 10, tzinfo=UTC)
    assert record(database, UNPRICED, now) == ["2026-01-10", "2026-01-12"]
    assert record(database, UNPRICED, now) == []
    later = GateAlert(UNPRICED.gate, UNPRICED.asset, "WARN", 0.05, (UNPRICED.failures[1], Failure("2026-01-13", "later", 0.5)), "run-2")
    assert record(database, later, now) == ["2026-01-13"]
    other_gate = GateAlert("cost_spike", "daily_usage", "WARN", 2.0, (Failure("2026-01-12", "spike", 3.1),), "run-2")
    assert record(database, other_gate, now) == ["2026-01-12"]
    assert [(row["gate"], row["subject"]) for row in alert_rows(database)] == [
        ("unpriced_runs_share", "2026-01-10"),
        ("unpriced_runs_share", "2026-01-12"),
        ("unpriced_runs_share", "2026-01-13"),
        ("cost_spike", "2026-01-12"),
    ]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_delivery_retries_with_backoff_while_the_webhook_is_down_then_sends_once(database: Database, monkeypatch: pytest.MonkeyPatch):
    clock = Clock(datetime.now(UTC))
    record(database, UNPRICED, clock.now)
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://127.0.0.1:3000/")
        settings = alert_settings()
        receiver.refuse(3)  # down for the first attempt and both quick retries
        pauses: list[float] = []
        down = deliver_due(database, settings, now=clock, sleep=pauses.append)
        assert receiver.refused == 3 and receiver.received == [] and pauses == [0.0, 0.5, 1.0]
        assert not down.sent and down.pending == 2
        error = down.failed[0][1]
        assert error == f"http://127.0.0.1:{receiver.server_address[1]} answered HTTP 503 Service Unavailable"
        assert "secret-token" not in down.line(destination(receiver.url))
        rows = alert_rows(database)
        assert {(row["attempts"], row["next_attempt_at"], row["last_error"]) for row in rows} == {(1, clock.now + backoff(1), error)}

        clock.now += timedelta(seconds=10)  # not due yet: nothing is posted
        assert deliver_due(database, settings, now=clock, sleep=pauses.append).sent == [] and receiver.refused == 3

        clock.now += timedelta(seconds=21)
        receiver.refuse(1)  # a quick retry within the tick succeeds
        up = deliver_due(database, settings, now=clock, sleep=pauses.append)
        assert [alert.gate for alert in up.sent] == ["unpriced_runs_share"] and up.pending == 0
        [(_, body)] = receiver.received
        assert body["failing_days"] == ["2026-01-10", "2026-01-12"]
        assert body["run_url"] == "http://127.0.0.1:3000/runs/run-1"

        clock.now += timedelta(hours=2)
        assert deliver_due(database, settings, now=clock).sent == [] and len(receiver.received) == 1


def test_a_claimed_alert_is_left_to_its_sender_until_the_lease_ends(database: Database, monkeypatch: pytest.MonkeyPatch):
    """Two senders on one database (two daemons) never both send; a sender that died mid-way is taken over."""
    clock = Clock(datetime.now(UTC))
    record(database, UNPRICED, clock.now)
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url)
        settings = alert_settings()

        def dies(url: str, body: dict, timeout: float) -> None:
            raise KeyboardInterrupt  # the first sender stops after taking its lease, before posting

        with pytest.raises(KeyboardInterrupt):
            deliver_due(database, settings, now=clock, post=dies)
        assert deliver_due(database, settings, now=clock).sent == [] and receiver.received == []
        clock.now += LEASE + timedelta(seconds=1)
        assert len(deliver_due(database, settings, now=clock).sent) == 1 and len(receiver.received) == 1


def test_sensor_sends_each_alert_once_across_ticks_and_restarts(database: Database, monkeypatch: pytest.MonkeyPatch):
    record(database, UNPRICED)
    resources = {"database": DatabaseResource(url=database.url)}
    with dg.instance_for_test() as instance:
        monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
        idle = quality_alerts_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert idle.skip_message == "ALERT_WEBHOOK_URL is not set: alerts are neither recorded nor sent"
        with WebhookReceiver() as receiver:
            monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url)
            host = f"http://127.0.0.1:{receiver.server_address[1]}"
            for tick in range(3):  # a new context each time: what a restarted daemon starts from
                result = quality_alerts_sensor(dg.build_sensor_context(instance=instance, resources=resources))
                if tick == 0:
                    assert result.skip_message.startswith(f"sent 1 alert to {host}: Quality gate unpriced_runs_share failed on")
                else:
                    assert result.skip_message == f"no alerts to send to {host}"
            assert len(receiver.received) == 1


def test_failed_gates_of_an_ingest_record_their_days_once(env, logs_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """An ingest of unpriced runs records the gate's failing days; a later ingest failing on the same day
    adds nothing, a new failing day adds one row."""
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")

    def unpriced_logs(day: int, seed: int) -> None:
        write_logs(logs_dir, 2, seed=seed, start=datetime(2026, 3, day, 9, tzinfo=UTC), mutate=unknown_model)

    database = Database(database_url)
    with dg.instance_for_test() as instance:
        unpriced_logs(3, seed=1)
        unpriced_logs(4, seed=2)
        first = check_results(ingest(instance))["unpriced_runs_share"]
        assert not first.passed and first.metadata["alert"].value == "2 new (2026-03-03, 2026-03-04), 0 alerted before"
        unpriced_logs(4, seed=3)
        unpriced_logs(5, seed=4)
        second = check_results(ingest(instance))["unpriced_runs_share"]
        assert second.metadata["failing_days"].value == "2026-03-04, 2026-03-05"
        assert second.metadata["alert"].value == "1 new (2026-03-05), 1 alerted before"
    rows = alert_rows(database)
    database.dispose()
    assert [(row["gate"], row["subject"]) for row in rows] == [
        ("unpriced_runs_share", "2026-03-03"),
        ("unpriced_runs_share", "2026-03-04"),
        ("unpriced_runs_share", "2026-03-05"),
    ]
