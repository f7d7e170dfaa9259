"""Daily aggregates: equal to the same figures computed in SQL, rebuilt not duplicated, kept current by the sensor."""

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.db import Database, daily_eval_summary, daily_feedback, daily_usage, feedback
from llm_monitoring.defs.aggregates import AGGREGATES_JOB_NAME, daily_aggregates_sensor, day_ranges
from llm_monitoring.defs.jobs import INGEST_JOB_NAME, ingest_run_config
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.feedback import delete_feedback
from llm_monitoring.samples import write_sample_logs
from llm_monitoring_tests.history_data import materializations, run_job, select, store_day, store_days, unknown_model


@pytest.fixture
def database(postgres_env_database: Database) -> Database:
    return postgres_env_database


def add_feedback(database: Database, verdicts: dict[int, bool]) -> None:
    now = datetime.now(timezone.utc)
    with database.transaction() as connection:
        connection.execute(sa.insert(feedback), [{"log_id": log_id, "is_good": good, "created_at": now} for log_id, good in verdicts.items()])


USAGE_SQL = """
SELECT (run_started_at AT TIME ZONE 'UTC')::date AS day, provider, model, agent_name,
       count(*) AS runs, count(total_cost) AS priced_runs,
       coalesce(sum(total_input_tokens), 0) AS input_tokens, coalesce(sum(total_output_tokens), 0) AS output_tokens,
       coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens, coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
       coalesce(sum(total_cost), 0) AS total_cost, coalesce(sum(input_cost), 0) AS input_cost,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95
FROM llm_logs GROUP BY 1, 2, 3, 4
"""

EVAL_SQL = """
SELECT (l.run_started_at AT TIME ZONE 'UTC')::date AS day, e.check_name, e.evaluator_version,
       count(*) AS runs, count(e.passed) AS applicable, count(*) FILTER (WHERE e.passed) AS passed
FROM eval_checks e JOIN llm_logs l ON l.id = e.log_id GROUP BY 1, 2, 3
"""

FEEDBACK_SQL = """
SELECT (l.run_started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS feedback, count(*) FILTER (WHERE f.is_good) AS good
FROM feedback f JOIN llm_logs l ON l.id = f.log_id GROUP BY 1
"""


def sql(database: Database, text: str) -> list:
    with database.connect() as connection:
        return list(connection.execute(sa.text(text)))


def test_daily_aggregates_equal_the_same_figures_computed_in_sql(database: Database, instance: dg.DagsterInstance):
    ids = store_days(database, date(2026, 1, 5), 3, 8)
    store_day(database, date(2026, 1, 6), 2, seed=9, mutate=unknown_model)
    add_feedback(database, {ids[date(2026, 1, 5)][0]: True, ids[date(2026, 1, 5)][1]: False, ids[date(2026, 1, 5)][2]: True,
                            ids[date(2026, 1, 7)][0]: False})

    result = run_job(AGGREGATES_JOB_NAME, instance, first="2026-01-05", last="2026-01-07")
    assert result.success
    assert {key: len(found) for key, found in materializations(result).items()} == {
        "daily_usage": 3, "daily_eval_summary": 3, "daily_feedback": 3,
    }
    run_job(AGGREGATES_JOB_NAME, instance, first="2026-01-05", last="2026-01-07")  # a rebuild replaces, never adds

    stored = {(row.day, row.provider, row.model, row.agent_name): row for row in select(database, sa.select(daily_usage))}
    expected = sql(database, USAGE_SQL)
    assert len(stored) == len(expected) == 3 * 5 + 2  # the unknown model shows under two agents
    for row in expected:
        mine = stored[(row.day, row.provider, row.model, row.agent_name)]
        assert (mine.runs, mine.priced_runs, mine.unpriced_runs) == (row.runs, row.priced_runs, row.runs - row.priced_runs)
        assert (mine.input_tokens, mine.output_tokens, mine.cache_read_tokens, mine.cache_write_tokens) == (
            row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens)
        assert (mine.total_cost, mine.input_cost) == (row.total_cost, row.input_cost)
        assert mine.duration_p50_seconds == pytest.approx(row.p50, abs=1e-5)
        assert mine.duration_p95_seconds == pytest.approx(row.p95, abs=1e-5)
    assert sum(row.unpriced_runs for row in stored.values()) == 2

    summary = {(row.day, row.check_name, row.evaluator_version): row for row in select(database, sa.select(daily_eval_summary))}
    expected = sql(database, EVAL_SQL)
    assert len(summary) == len(expected) == 3 * 7
    for row in expected:
        mine = summary[(row.day, row.check_name, row.evaluator_version)]
        assert (mine.runs, mine.applicable, mine.passed) == (row.runs, row.applicable, row.passed)
        assert mine.pass_rate == (pytest.approx(row.passed / row.applicable) if row.applicable else None)

    feedback_days = {row.day: row for row in select(database, sa.select(daily_feedback))}
    expected = sql(database, FEEDBACK_SQL)
    assert sorted(feedback_days) == sorted(row.day for row in expected) == [date(2026, 1, 5), date(2026, 1, 7)]
    for row in expected:
        mine = feedback_days[row.day]
        assert (mine.feedback, mine.good, mine.bad) == (row.feedback, row.good, row.feedback - row.good)
        assert mine.good_pct == pytest.approx(100 * row.good / row.feedback)


def tick(instance: dg.DagsterInstance, cursor: str | None):
    from llm_monitoring.definitions import defs

    # The definitions let the tick resolve partitioned run requests as the daemon does.
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources={"database": DatabaseResource()}) as context:
        return daily_aggregates_sensor.evaluate_tick(context)


def execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    from llm_monitoring.definitions import defs

    result = defs.resolve_job_def(AGGREGATES_JOB_NAME).execute_in_process(
        instance=instance, tags=request.tags, partition_key=request.partition_key, asset_selection=request.asset_selection
    )
    assert result.success


def requested(data) -> list[tuple[str, str, list[str]]]:
    """(first day, last day, assets) of each run request."""
    found = []
    for request in data.run_requests:
        first = request.partition_key or request.tags["dagster/asset_partition_range_start"]
        last = request.partition_key or request.tags["dagster/asset_partition_range_end"]
        found.append((first, last, sorted(key.to_user_string() for key in request.asset_selection)))
    return found


def ingest(instance: dg.DagsterInstance) -> None:
    from llm_monitoring.definitions import defs

    assert defs.resolve_job_def(INGEST_JOB_NAME).execute_in_process(instance=instance, run_config=ingest_run_config([])).success


def usage_runs_by_day(database: Database) -> dict[date, int]:
    runs: dict[date, int] = {}
    for row in select(database, sa.select(daily_usage.c.day, daily_usage.c.runs)):
        runs[row.day] = runs.get(row.day, 0) + row.runs
    return runs


def test_sensor_materializes_the_days_each_ingest_touched(database: Database, logs_dir: Path):
    with dg.instance_for_test() as instance:
        write_sample_logs(logs_dir, 9, seed=1, start=datetime(2026, 1, 5, 0, 30, tzinfo=timezone.utc), spread=timedelta(days=3))
        ingest(instance)

        first = tick(instance, None)
        assert requested(first) == [("2026-01-05", "2026-01-07", ["daily_eval_summary", "daily_usage"])]
        for request in first.run_requests:
            execute(instance, request)
        assert usage_runs_by_day(database) == {date(2026, 1, 5): 3, date(2026, 1, 6): 3, date(2026, 1, 7): 3}

        write_sample_logs(logs_dir, 2, seed=2, start=datetime(2026, 1, 6, 18, tzinfo=timezone.utc), spread=timedelta(hours=1))
        write_sample_logs(logs_dir, 2, seed=3, start=datetime(2026, 1, 20, 8, tzinfo=timezone.utc), spread=timedelta(hours=1))
        ingest(instance)

        second = tick(instance, first.cursor)
        assert requested(second) == [
            ("2026-01-06", "2026-01-06", ["daily_eval_summary", "daily_usage"]),
            ("2026-01-20", "2026-01-20", ["daily_eval_summary", "daily_usage"]),
        ]
        for request in second.run_requests:
            execute(instance, request)
        assert usage_runs_by_day(database) == {date(2026, 1, 5): 3, date(2026, 1, 6): 5, date(2026, 1, 7): 3, date(2026, 1, 20): 2}

        quiet = tick(instance, second.cursor)
        assert not quiet.run_requests and quiet.skip_message

        log_id = select(database, sa.text("SELECT id FROM llm_logs WHERE run_started_at >= '2026-01-20' LIMIT 1"))[0].id
        add_feedback(database, {log_id: True})
        after_feedback = tick(instance, quiet.cursor)
        assert requested(after_feedback) == [("2026-01-20", "2026-01-20", ["daily_feedback"])]
        execute(instance, after_feedback.run_requests[0])
        assert [(row.day, row.good, row.bad) for row in select(database, sa.select(daily_feedback))] == [(date(2026, 1, 20), 1, 0)]

        # A deleted rating leaves no row behind, yet its day is rebuilt too.
        feedback_id = select(database, sa.text("SELECT id FROM feedback"))[0].id
        delete_feedback(database, feedback_id)
        after_delete = tick(instance, after_feedback.cursor)
        assert requested(after_delete) == [("2026-01-20", "2026-01-20", ["daily_feedback"])]
        execute(instance, after_delete.run_requests[0])
        assert select(database, sa.select(daily_feedback)) == []
        assert not tick(instance, after_delete.cursor).run_requests


@pytest.mark.parametrize(
    ("days", "ranges"),
    [
        ([], []),
        ([5], [(5, 5)]),
        ([5, 6, 7], [(5, 7)]),
        ([5, 12], [(5, 12)]),  # a week apart: one run rebuilding the empty days costs less than two runs
        ([5, 13, 14], [(5, 5), (13, 14)]),
    ],
)
def test_day_ranges_group_nearby_days_into_one_run(days: list[int], ranges: list[tuple[int, int]]):
    as_date = lambda n: date(2026, 1, n)  # noqa: E731
    assert day_ranges({as_date(n) for n in days}) == [(as_date(a), as_date(b)) for a, b in ranges]
