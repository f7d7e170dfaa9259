"""Retention: 40 days of runs with feedback, RETENTION_DAYS=30 and RETENTION_RAW_DAYS=7 through the
command line (the retention job), the dry run, the audit row, the aggregates of deleted days, the
schedule, and the upgrade of an existing database."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.cli import main
from llm_monitoring.config import RetentionSettings
from llm_monitoring.defs import keys
from llm_monitoring.defs.retention.schedules import build_retention_schedule
from llm_monitoring.feedback import delete_feedback, save_feedback
from llm_monitoring.recompute import rebuild_daily_feedback, rebuild_daily_usage
from llm_monitoring.retention import apply_retention, first_rebuildable_day
from llm_monitoring.samples import PROFILES
from llm_monitoring.storage.bulk import insert_rows, store_runs
from llm_monitoring.storage.daily import daily_rows
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.ledger import record_ingest_error, resolve_ingest_errors
from llm_monitoring.storage.retention import retention_entries
from llm_monitoring.storage.schema import eval_checks, feedback, ingest_errors, llm_logs, metadata, processed_files, schema_state
from llm_monitoring_tests.history_data import sample_run, store_day

DAYS = 40


def store_history(database: Database, now: datetime) -> None:
    """Two runs a day for DAYS days, one and two hours before this time of day, each with a rating;
    the rating of the oldest run is deleted (a feedback_deletions row)."""
    rng = random.Random(40)
    runs = [
        sample_run(rng, now - timedelta(days=offset, hours=hours), PROFILES[(offset + hours) % len(PROFILES)])
        for offset in range(DAYS)
        for hours in (1, 2)
    ]
    inserted = store_runs(database, runs).inserted
    ids = [inserted[run.content_hash] for run in runs]
    for log_id in ids:
        save_feedback(database, log_id, log_id % 3 != 0, comments=f"rating of {log_id}")
    delete_feedback(database, len(ids))


def snapshot(database: Database) -> dict[str, list[tuple]]:
    with database.connect() as connection:
        return {table.name: sorted(map(tuple, connection.execute(sa.select(table))), key=repr) for table in metadata.sorted_tables}


def add_ledger_rows(database: Database, logs_dir: Path, long_ago: datetime) -> None:
    (logs_dir / "_still_here.json").write_text("{}")
    columns = ("name", "processed_as", "content_hash", "processed_at")
    with database.transaction() as connection:
        insert_rows(
            connection,
            processed_files,
            columns,
            [("gone.json", "_gone.json", "a" * 64, long_ago), ("still_here.json", "_still_here.json", "b" * 64, long_ago)],
        )
    record_ingest_error(database, "logs/old_fixed.json", "c" * 64, "truncated JSON", None)
    record_ingest_error(database, "logs/old_open.json", "d" * 64, "truncated JSON", None)
    resolve_ingest_errors(database, ["c" * 64])
    with database.transaction() as connection:
        connection.execute(sa.update(ingest_errors).values(last_seen=long_ago, first_seen=long_ago))


def test_retention_deletes_old_runs_with_their_rows_drops_old_raw_logs_and_writes_an_audit_row(
    env, database: Database, logs_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    now = datetime.now(UTC)
    store_history(database, now)
    add_ledger_rows(database, logs_dir, now - timedelta(days=35))
    first_day, end_day = now - timedelta(days=DAYS + 1), now + timedelta(days=1)
    rebuild_daily_usage(database, first_day, end_day)
    rebuild_daily_feedback(database, first_day, end_day)
    usage_before = {row["day"]: row["runs"] for row in daily_rows(database, "daily_usage", first_day.date(), end_day.date())}
    monkeypatch.setenv("RETENTION_DAYS", "30")
    monkeypatch.setenv("RETENTION_RAW_DAYS", "7")

    before = snapshot(database)
    assert main(["retention", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert snapshot(database) == before, "a dry run changed the database"
    assert "would delete 20 runs" in dry and "would drop 46 raw logs" in dry and "dry run: nothing was changed" in dry

    assert main(["retention"]) == 0
    out = capsys.readouterr().out
    assert "deleted 20 runs" in out and "dropped 46 raw logs" in out and "audit row retention_log #1" in out
    run_cutoff, raw_cutoff = datetime.now(UTC) - timedelta(days=30), datetime.now(UTC) - timedelta(days=7)
    with database.connect() as connection:
        runs = connection.execute(sa.select(llm_logs.c.id, llm_logs.c.run_started_at, llm_logs.c.raw_json, llm_logs.c.user_prompt)).all()
        check_ids = set(connection.scalars(sa.select(eval_checks.c.log_id)))
        feedback_ids = set(connection.scalars(sa.select(feedback.c.log_id)))
        ledger = set(connection.scalars(sa.select(processed_files.c.processed_as)))
        errors = set(connection.scalars(sa.select(ingest_errors.c.filepath)))
    assert len(runs) == 2 * DAYS - 20
    assert all(run.run_started_at >= run_cutoff for run in runs), "a run older than 30 days is left"
    assert all(run.raw_json is None for run in runs if run.run_started_at < raw_cutoff), "a raw log older than 7 days is left"
    assert all(run.raw_json and run.user_prompt for run in runs if run.run_started_at >= raw_cutoff + timedelta(minutes=1))
    assert all(run.user_prompt for run in runs), "the parsed columns of a run stay"
    stored = {run.id for run in runs}
    assert check_ids <= stored and feedback_ids <= stored, "orphan check or feedback rows"
    assert len(feedback_ids) == len(stored)
    assert ledger == {"_still_here.json"}  # the renamed file still in the folder keeps its row
    assert errors == {"logs/old_open.json"}  # an open error stays, whatever its age

    [audit] = retention_entries(database)
    assert (audit.retention_days, audit.retention_raw_days, audit.raw_logs_dropped) == (30, 7, 46)
    assert audit.rows_deleted == {
        "llm_logs": 20,
        "eval_checks": 140,
        "feedback": 19,
        "feedback_deletions": 1,
        "ingest_errors": 1,
        "processed_files": 1,
    }
    assert audit.run_cutoff is not None and abs(audit.run_cutoff - run_cutoff) < timedelta(minutes=5)
    assert audit.triggered_by == "command line"

    # The daily aggregates keep the deleted days, even when a backfill rebuilds every day.
    rebuild_daily_usage(database, first_day, end_day)
    usage_after = {row["day"]: row["runs"] for row in daily_rows(database, "daily_usage", first_day.date(), end_day.date())}
    assert usage_after == usage_before
    assert first_rebuildable_day(database) == audit.run_cutoff.date() + timedelta(days=1)


def test_deletion_in_small_batches_deletes_the_same_rows(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    try:
        today = datetime.now(UTC).date()
        for offset in range(6):
            store_day(database, today - timedelta(days=offset * 10), 3, seed=offset)
        report = apply_retention(database, RetentionSettings(days=25, raw_days=5), batch_size=2)
        assert report.rows_deleted["llm_logs"] == 9 and report.rows_deleted["eval_checks"] == 63
        assert report.raw_logs_dropped == 6
        assert "processed_files kept: the log folder cannot be read" in " ".join(report.lines())
    finally:
        database.dispose()


def test_nothing_set_deletes_nothing_and_says_so(env, database: Database, capsys: pytest.CaptureFixture[str]):
    store_day(database, date(2020, 1, 1), 2)
    assert main(["retention"]) == 0
    assert "RETENTION_DAYS and RETENTION_RAW_DAYS are unset" in capsys.readouterr().out
    with database.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(llm_logs)) == 2


def test_a_bad_retention_setting_fails_in_one_line(env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("RETENTION_DAYS", "thirty")
    assert main(["retention"]) == 1
    error = capsys.readouterr().err.strip()
    assert (
        error
        == "retention failed: RETENTION_DAYS must be a whole number of days from 1 to 1,000,000 (or unset to keep everything), got 'thirty'"
    )


@pytest.mark.parametrize(("configured", "status"), [(True, dg.DefaultScheduleStatus.RUNNING), (False, dg.DefaultScheduleStatus.STOPPED)])
def test_the_daily_schedule_runs_when_either_variable_is_set(configured: bool, status, monkeypatch: pytest.MonkeyPatch):
    schedule = build_retention_schedule(configured)
    assert schedule.default_status == status
    assert schedule.job_name == keys.RETENTION_JOB and schedule.execution_timezone == "UTC"
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    monkeypatch.delenv("RETENTION_RAW_DAYS", raising=False)
    with dg.build_schedule_context() as context:
        skipped = schedule.evaluate_tick(context)
    assert not skipped.run_requests and "unset" in (skipped.skip_message or "")
    monkeypatch.setenv("RETENTION_RAW_DAYS", "7")
    with dg.build_schedule_context() as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_config == keys.retention_run_config(dry_run=False)


def test_an_existing_database_gains_the_new_column_and_table_in_place(database: Database):
    [log_id] = store_day(database, date(2026, 1, 5), 1)
    with database.transaction() as connection:  # the database as the previous version left it
        connection.exec_driver_sql("DROP TABLE retention_log")
        connection.exec_driver_sql("ALTER TABLE llm_logs DROP COLUMN redactions")
        connection.execute(sa.delete(schema_state))
    database.ensure_schema()
    with database.connect() as connection:
        inspector = sa.inspect(connection)
        assert "redactions" in {column["name"] for column in inspector.get_columns("llm_logs")}
        assert inspector.has_table("retention_log")
        assert connection.execute(sa.select(llm_logs.c.id, llm_logs.c.redactions)).all() == [(log_id, None)]
    assert retention_entries(database) == [] and first_rebuildable_day(database) is None
