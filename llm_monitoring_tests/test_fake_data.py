"""Fake data: generated run logs go through the real parser, pricing, evaluator and storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llm_monitoring import fake_data
from llm_monitoring.ingest import ingest_files
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.sources import LocalDirectorySource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.feedback import insert_feedback
from llm_monitoring.storage.schema import daily_eval_summary, daily_feedback, daily_usage, eval_checks, feedback, llm_logs
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database


def run_cli(monkeypatch: pytest.MonkeyPatch, url: str, *args: str) -> int:
    monkeypatch.setenv("DATABASE_URL", url)
    return fake_data.main(list(args))


def rows(url: str, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    database = Database(url)
    try:
        with database.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]
    finally:
        database.dispose()


def daily_runs(url: str) -> dict[date, int]:
    """Runs per day as daily_usage, daily_eval_summary (its checks' most frequent row count) and
    daily_feedback tell them, each next to what the stored rows say."""
    usage = dict(rows(url, sa.select(daily_usage.c.day, sa.func.sum(daily_usage.c.runs)).group_by(daily_usage.c.day)))
    by_check = rows(url, sa.select(daily_eval_summary.c.day, sa.func.max(daily_eval_summary.c.runs)).group_by(daily_eval_summary.c.day))
    rated = dict(rows(url, sa.select(daily_feedback.c.day, daily_feedback.c.feedback)))
    stored: dict[date, int] = {}
    for (started,) in rows(url, sa.select(llm_logs.c.run_started_at)):
        stored[started.astimezone(UTC).date()] = stored.get(started.astimezone(UTC).date(), 0) + 1
    given: dict[date, int] = {}
    for (started,) in rows(url, sa.select(llm_logs.c.run_started_at).join(feedback, feedback.c.log_id == llm_logs.c.id)):
        given[started.astimezone(UTC).date()] = given.get(started.astimezone(UTC).date(), 0) + 1
    assert {day: int(runs) for day, runs in usage.items()} == {day: stored[day] for day in usage}
    assert dict(by_check) == {day: stored[day] for day, _ in by_check}
    assert rated == {day: given[day] for day in rated}
    return {day: int(runs) for day, runs in usage.items()}


def test_count_300_over_24_hours_gives_300_priced_runs_spread_over_the_last_day(monkeypatch, postgres_url, capsys):
    before = datetime.now(UTC)
    assert run_cli(monkeypatch, postgres_url, "--count", "300", "--hours", "24") == 0
    after = datetime.now(UTC)
    out = capsys.readouterr().out
    assert "Stored 300 fake runs (300 priced" in out
    # The dashboards read whole days from the daily tables: the fake runs' days are rebuilt.
    assert sum(daily_runs(postgres_url).values()) == 300
    assert "daily tables rebuilt for 2 days" in out or "daily tables rebuilt for 1 day" in out

    runs = rows(
        postgres_url,
        sa.select(
            llm_logs.c.provider,
            llm_logs.c.model,
            llm_logs.c.total_input_tokens,
            llm_logs.c.total_output_tokens,
            llm_logs.c.total_cost,
            llm_logs.c.pricing_status,
            llm_logs.c.run_started_at,
            llm_logs.c.origin,
            llm_logs.c.duration_seconds,
        ),
    )
    assert len(runs) == 300
    assert {(provider, model) for provider, model, *_ in runs} == {
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-latest"),
        ("google-gla", "gemini-1.5-pro"),
    }
    for _, _, tokens_in, tokens_out, cost, status, started, origin, duration in runs:
        assert 500 <= tokens_in <= 22_000 and 100 <= tokens_out <= 4_000
        assert cost is not None and cost > 0 and status == "priced"
        assert before - timedelta(hours=24) <= started <= after
        assert origin == "fake" and duration > 0
    hours = {min(int((before - started).total_seconds() // 3600), 23) for *_, started, _, _ in runs}
    assert hours == set(range(24)), "every hour of the day has runs"

    checks = rows(postgres_url, sa.select(eval_checks.c.log_id, sa.func.count()).group_by(eval_checks.c.log_id))
    assert len(checks) == 300 and {count for _, count in checks} == {7}

    ratings = [is_good for (is_good,) in rows(postgres_url, sa.select(feedback.c.is_good))]
    assert len(ratings) == 150  # --feedback-rate 0.5 by default
    assert sum(ratings) / len(ratings) == pytest.approx(0.65, abs=0.01)
    given = rows(
        postgres_url, sa.select(feedback.c.created_at, llm_logs.c.run_finished_at).join(llm_logs, llm_logs.c.id == feedback.c.log_id)
    )
    assert all(finished < created <= after for created, finished in given)


def _dump(url: str) -> dict[str, Any]:
    """Everything stored, keyed by content hash (ids differ between databases)."""
    logs = {
        row[0]: row
        for row in rows(url, sa.select(llm_logs.c.content_hash, *[c for c in llm_logs.c if c.name not in {"id", "content_hash"}]))
    }
    checks = sorted(
        rows(
            url,
            sa.select(
                llm_logs.c.content_hash,
                eval_checks.c.check_name,
                eval_checks.c.passed,
                eval_checks.c.score,
                eval_checks.c.details,
                eval_checks.c.evaluator_version,
            ).join(llm_logs, llm_logs.c.id == eval_checks.c.log_id),
        )
    )
    ratings = sorted(
        rows(
            url,
            sa.select(
                llm_logs.c.content_hash,
                feedback.c.is_good,
                feedback.c.comments,
                feedback.c.reference_answer,
                feedback.c.reviewer,
                feedback.c.created_at,
            ).join(llm_logs, llm_logs.c.id == feedback.c.log_id),
        )
    )
    return {"logs": logs, "checks": checks, "feedback": ratings}


def _same_hour(action: Callable[[], None]) -> None:
    # With --seed the window ends at the current hour: retry if the clock crossed an hour meanwhile.
    for _ in range(2):
        hour = fake_data.window_end(seed=0)
        action()
        if fake_data.window_end(seed=0) == hour:
            return
    pytest.fail("the hour changed twice")


def test_the_same_seed_gives_identical_data(monkeypatch, postgres_server, postgres_url):
    name, other_url = create_postgres_database(postgres_server)
    try:

        def fill_both() -> None:
            for url in (postgres_url, other_url):
                database = Database(url)
                database.ensure_schema()
                with database.transaction() as connection:
                    for table in (feedback, eval_checks, llm_logs):
                        connection.execute(sa.delete(table))
                database.dispose()
                assert run_cli(monkeypatch, url, "--count", "40", "--seed", "1") == 0

        _same_hour(fill_both)
        first, second = _dump(postgres_url), _dump(other_url)
        assert len(first["logs"]) == 40 and first["feedback"]
        assert first == second
    finally:
        drop_postgres_database(postgres_server, name)


def test_the_same_seed_twice_in_one_database_adds_nothing(monkeypatch, postgres_url, capsys):
    def twice() -> None:
        assert run_cli(monkeypatch, postgres_url, "--count", "30", "--seed", "4") == 0
        assert run_cli(monkeypatch, postgres_url, "--count", "30", "--seed", "4") == 0

    _same_hour(twice)
    assert "Stored 0 fake runs (0 priced, 30 already stored)" in capsys.readouterr().out
    assert rows(postgres_url, sa.select(sa.func.count()).select_from(llm_logs)) == [(30,)]
    assert rows(postgres_url, sa.select(sa.func.count()).select_from(feedback)) == [(15,)]


def test_different_seeds_give_different_runs():
    end = datetime(2026, 1, 5, 12, tzinfo=UTC)
    one = fake_data.build_dataset(10, 24, seed=1, end=end)
    two = fake_data.build_dataset(10, 24, seed=2, end=end)
    assert {run.raw for run in one.run_logs}.isdisjoint(run.raw for run in two.run_logs)
    assert fake_data.build_dataset(10, 24, seed=1, end=end) == one


def test_purge_removes_only_fake_runs_with_their_checks_and_feedback(monkeypatch, postgres_url, tmp_path, capsys):
    database = Database(postgres_url)
    try:
        database.ensure_schema()
        logs = tmp_path / "logs"
        write_sample_logs(logs, 5, seed=9)
        monkeypatch.setenv("SETTLE_SECONDS", "0")
        report = ingest_files(LocalDirectorySource(logs), database)
        assert report.stored == 5
        insert_feedback(database, [{"log_id": report.stored_ids[0], "is_good": True, "comments": "real"}])
        assert run_cli(monkeypatch, postgres_url, "--count", "20") == 0
        fake_days = set(daily_runs(postgres_url))
        assert fake_days

        assert run_cli(monkeypatch, postgres_url, "--purge") == 0
        assert "Deleted 20 fake runs, 140 checks and 10 feedback rows" in capsys.readouterr().out
        # The purged days are rebuilt from the runs left: only the real runs of those days remain.
        assert sum(daily_runs(postgres_url).values()) == sum(
            1 for (started,) in rows(postgres_url, sa.select(llm_logs.c.run_started_at)) if started.astimezone(UTC).date() in fake_days
        )
        assert rows(postgres_url, sa.select(llm_logs.c.origin, sa.func.count()).group_by(llm_logs.c.origin)) == [("file", 5)]
        assert rows(postgres_url, sa.select(sa.func.count()).select_from(eval_checks)) == [(35,)]
        assert rows(postgres_url, sa.select(feedback.c.comments)) == [("real",)]
        assert run_cli(monkeypatch, postgres_url, "--purge") == 0
        assert "Deleted 0 fake runs" in capsys.readouterr().out
    finally:
        database.dispose()


def test_to_files_writes_logs_that_the_real_ingest_stores_like_the_direct_path(monkeypatch, postgres_url, tmp_path):
    end = "2026-01-05T12:00:00+00:00"
    folder = tmp_path / "fake_logs"
    schema = Database(postgres_url)
    schema.ensure_schema()
    schema.dispose()
    assert run_cli(monkeypatch, postgres_url, "--count", "12", "--seed", "2", "--end", end, "--to-files", str(folder)) == 0
    files = sorted(folder.iterdir())
    assert len(files) == 12 and all(path.suffix == ".json" for path in files)
    assert rows(postgres_url, sa.select(sa.func.count()).select_from(llm_logs)) == [(0,)], "nothing stored directly"

    database = Database(postgres_url)
    try:
        monkeypatch.setenv("SETTLE_SECONDS", "0")
        report = ingest_files(LocalDirectorySource(folder), database)
    finally:
        database.dispose()
    assert report.stored == 12 and report.quarantined == 0

    # The same runs through the direct path: same bytes, so the same hashes, tokens and costs.
    direct = [
        fake_data.to_run_to_store(run_log) for run_log in fake_data.build_dataset(12, 24, seed=2, end=datetime.fromisoformat(end)).run_logs
    ]
    stored = {
        row[0]: row[1:]
        for row in rows(
            postgres_url,
            sa.select(
                llm_logs.c.content_hash,
                llm_logs.c.total_input_tokens,
                llm_logs.c.total_output_tokens,
                llm_logs.c.total_cost,
                llm_logs.c.origin,
            ),
        )
    }
    assert set(stored) == {run.content_hash for run in direct}
    for run in direct:
        tokens_in, tokens_out, cost, origin = stored[run.content_hash]
        assert (tokens_in, tokens_out, origin) == (run.record.input_tokens, run.record.output_tokens, "file")
        assert cost == run.price.total_cost


def test_fake_data_works_on_the_default_sqlite_database_too(monkeypatch, sqlite_url, capsys):
    assert run_cli(monkeypatch, sqlite_url, "--count", "10", "--feedback-rate", "1", "--good-ratio", "0") == 0
    assert "Stored 10 fake runs (10 priced" in capsys.readouterr().out
    assert rows(sqlite_url, sa.select(feedback.c.is_good, sa.func.count()).group_by(feedback.c.is_good)) == [(False, 10)]


@pytest.mark.parametrize("args", [["--feedback-rate", "1.5"], ["--good-ratio", "-0.1"], ["--hours", "0"]])
def test_out_of_range_options_are_refused(args):
    with pytest.raises(SystemExit):
        fake_data.build_parser().parse_args(args)


def test_seeded_window_ends_at_the_hour_and_unseeded_now():
    now = datetime(2026, 3, 1, 10, 42, 7, tzinfo=UTC)
    assert fake_data.window_end(1, now) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert fake_data.window_end(None, now) == now


def test_a_dataset_keeps_every_run_and_its_feedback_inside_the_window():
    end = datetime(2026, 3, 1, 10, tzinfo=UTC)
    dataset = fake_data.build_dataset(100, 2, seed=3, end=end, feedback_rate=0.3)
    assert all(end - timedelta(hours=2) <= run.started < end - fake_data.END_MARGIN for run in dataset.run_logs)
    assert len(dataset.feedback) == 30
    assert all(dataset.run_logs[item.run_index].started < item.given_at <= end for item in dataset.feedback)


def test_files_are_written_whole(tmp_path: Path):
    dataset = fake_data.build_dataset(3, 1, seed=5, end=datetime(2026, 3, 1, tzinfo=UTC))
    paths = fake_data.write_files(tmp_path, dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in paths)
    assert [path.read_bytes() for path in paths] == [run.raw for run in dataset.run_logs]
