"""Daily aggregates: equal to the same figures computed in SQL, rebuilt not duplicated, kept current by the sensor."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.defs.aggregates.sensors import daily_aggregates_sensor, day_ranges
from llm_monitoring.defs.keys import AGGREGATES_JOB, GATES_JOB, INGEST_JOB, ingest_run_config
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.feedback import delete_feedback
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import daily_eval_summary, daily_feedback, daily_usage, feedback
from llm_monitoring_tests.history_data import materializations, run_job, select, store_day, store_days, unknown_model


@pytest.fixture
def database(postgres_env_database: Database) -> Database:
    return postgres_env_database


def add_feedback(database: Database, verdicts: dict[int, bool]) -> None:
    now = datetime.now(UTC)
    with database.transaction() as connection:
        connection.execute(
            sa.insert(feedback), [{"log_id": log_id, "is_good": good, "created_at": now} for log_id, good in verdicts.items()]
        )


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
    add_feedback(
        database,
        {ids[date(2026, 1, 5)][0]: True, ids[date(2026, 1, 5)][1]: False, ids[date(2026, 1, 5)][2]: True, ids[date(2026, 1, 7)][0]: False},
    )

    result = run_job(AGGREGATES_JOB, instance, first="2026-01-05", last="2026-01-07")
    assert result.success
    assert {key: len(found) for key, found in materializations(result).items()} == {
        "daily_usage": 3,
        "daily_eval_summary": 3,
        "daily_feedback": 3,
    }
    run_job(AGGREGATES_JOB, instance, first="2026-01-05", last="2026-01-07")  # a rebuild replaces, never adds

    stored = {(row.day, row.provider, row.model, row.agent_name): row for row in select(database, sa.select(daily_usage))}
    expected = sql(database, USAGE_SQL)
    assert len(stored) == len(expected) == 3 * 5 + 2  # the unknown model shows under two agents
    for row in expected:
        mine = stored[(row.day, row.provider, row.model, row.agent_name)]
        assert (mine.runs, mine.priced_runs, mine.unpriced_runs) == (row.runs, row.priced_runs, row.runs - row.priced_runs)
        assert (mine.input_tokens, mine.output_tokens, mine.cache_read_tokens, mine.cache_write_tokens) == (
            row.input_tokens,
            row.output_tokens,
            row.cache_read_tokens,
            row.cache_write_tokens,
        )
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


def tick(instance: dg.DagsterInstance, cursor: str | None, url: str | None = None):
    from llm_monitoring.definitions import defs

    # The definitions let the tick resolve partitioned run requests as the daemon does.
    resources = {"database": DatabaseResource(url=url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources) as context:
        return daily_aggregates_sensor.evaluate_tick(context)


def execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    from llm_monitoring.definitions import defs

    result = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance,
        tags=request.tags,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        run_config=request.run_config,
    )
    assert result.success
    return result


def requested(data) -> list[tuple[str, str, list[str]]]:
    """(first day, last day, assets) of each aggregates run request; (job, days to judge, []) of a gates request."""
    found = []
    for request in data.run_requests:
        if request.job_name == GATES_JOB:
            configs = {
                op["config"]["days"][0] if len(op["config"]["days"]) == 1 else ",".join(op["config"]["days"])
                for op in request.run_config["ops"].values()
            }
            found.append((GATES_JOB, configs.pop(), []))
            continue
        assert request.job_name == AGGREGATES_JOB and not request.asset_check_keys
        first = request.partition_key or request.tags["dagster/asset_partition_range_start"]
        last = request.partition_key or request.tags["dagster/asset_partition_range_end"]
        found.append((first, last, sorted(key.to_user_string() for key in request.asset_selection)))
    return found


def ingest(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    from llm_monitoring.definitions import defs

    result = defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=ingest_run_config([]))
    assert result.success
    return result


def usage_runs_by_day(database: Database) -> dict[date, int]:
    runs: dict[date, int] = {}
    for row in select(database, sa.select(daily_usage.c.day, daily_usage.c.runs)):
        runs[row.day] = runs.get(row.day, 0) + row.runs
    return runs


# Faults for the refresh an ingest does: the daily table refuses new rows (reading it still works).
REFUSE_ROWS_POSTGRES = """
CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'daily_usage refuses rows'; END $$;
CREATE TRIGGER refuse_rows BEFORE INSERT ON daily_usage FOR EACH ROW EXECUTE FUNCTION refuse_rows();
"""
REFUSE_ROWS_SQLITE = """
CREATE TRIGGER refuse_rows BEFORE INSERT ON daily_eval_summary BEGIN SELECT RAISE(ABORT, 'daily_eval_summary refuses rows'); END
"""


def test_ingest_rebuilds_its_days_and_the_sensor_covers_the_rest(database: Database, logs_dir: Path):
    with dg.instance_for_test() as instance:
        write_sample_logs(logs_dir, 9, seed=1, start=datetime(2026, 1, 5, 0, 30, tzinfo=UTC), spread=timedelta(days=3))
        ingest(instance)
        # Current when the ingest run ends: no other run needed.
        assert usage_runs_by_day(database) == {date(2026, 1, 5): 3, date(2026, 1, 6): 3, date(2026, 1, 7): 3}

        first = tick(instance, None)  # a first tick catches up on every day with runs
        assert requested(first) == [("2026-01-05", "2026-01-07", ["daily_eval_summary", "daily_usage"])]
        execute(instance, first.run_requests[0])
        judge = tick(instance, first.cursor)  # days rebuilt outside an ingest get their gates next
        assert requested(judge) == [(GATES_JOB, "2026-01-05..2026-01-07", [])]
        gates = execute(instance, judge.run_requests[0])
        assert len(gates.get_asset_check_evaluations()) == 6

        write_sample_logs(logs_dir, 2, seed=2, start=datetime(2026, 1, 6, 18, tzinfo=UTC), spread=timedelta(hours=1))
        write_sample_logs(logs_dir, 2, seed=3, start=datetime(2026, 1, 20, 8, tzinfo=UTC), spread=timedelta(hours=1))
        ingest(instance)
        assert usage_runs_by_day(database) == {date(2026, 1, 5): 3, date(2026, 1, 6): 5, date(2026, 1, 7): 3, date(2026, 1, 20): 2}
        quiet = tick(instance, judge.cursor)  # the ingest rebuilt and judged its own days
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
        settled = tick(instance, after_delete.cursor)
        assert not settled.run_requests

        # An ingest that could not rebuild its days (the table refuses rows) still succeeds and says so;
        # the sensor rebuilds them.
        with database.transaction() as connection:
            connection.execute(sa.text(REFUSE_ROWS_POSTGRES))
        write_sample_logs(logs_dir, 2, seed=4, start=datetime(2026, 1, 25, 8, tzinfo=UTC), spread=timedelta(hours=1))
        stored = materializations(ingest(instance))["llm_logs"][0]
        assert stored.metadata["aggregates_refreshed"].value is False
        assert "refuses rows" in stored.metadata["aggregates_error"].value
        with database.transaction() as connection:
            connection.execute(sa.text("DROP TRIGGER refuse_rows ON daily_usage"))
        repair = tick(instance, settled.cursor)
        assert requested(repair) == [("2026-01-25", "2026-01-25", ["daily_eval_summary", "daily_usage"])]
        execute(instance, repair.run_requests[0])
        assert usage_runs_by_day(database) == {
            date(2026, 1, 5): 3,
            date(2026, 1, 6): 5,
            date(2026, 1, 7): 3,
            date(2026, 1, 20): 2,
            date(2026, 1, 25): 2,
        }


def test_sensor_acts_only_on_ingests_and_rebuilds_of_its_own_database(
    database: Database, logs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two deployments sharing one DAGSTER_HOME, each with its own database: neither rebuilds or judges
    the other's days."""
    own_url = database.url
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    with dg.instance_for_test() as instance:
        write_sample_logs(logs_dir, 3, seed=1, start=datetime(2026, 1, 5, 8, tzinfo=UTC), spread=timedelta(hours=3))
        ingest(instance)
        own = tick(instance, None, own_url)
        execute(instance, own.run_requests[0])
        own = tick(instance, own.cursor, own_url)
        execute(instance, own.run_requests[0])  # the gates of the catch-up
        assert not tick(instance, own.cursor, own_url).run_requests

        # The other deployment: an ingest whose refresh failed, and a backfill, both into its database.
        monkeypatch.setenv("DATABASE_URL", other_url)
        other_logs = tmp_path / "other_logs"
        monkeypatch.setenv("LOGS_DIR", str(other_logs))
        other = Database(other_url)
        other.ensure_schema()
        with other.transaction() as connection:
            connection.execute(sa.text(REFUSE_ROWS_SQLITE))
        write_sample_logs(other_logs, 3, seed=2, start=datetime(2026, 2, 10, 8, tzinfo=UTC), spread=timedelta(hours=3))
        assert materializations(ingest(instance))["llm_logs"][0].metadata["aggregates_refreshed"].value is False
        with other.transaction() as connection:
            connection.execute(sa.text("DROP TRIGGER refuse_rows"))
        run_job(AGGREGATES_JOB, instance, first="2026-02-01", last="2026-02-12")
        other.dispose()

        untouched = tick(instance, own.cursor, own_url)
        assert not untouched.run_requests, requested(untouched)
        # The other database's own sensor does act on them.
        theirs = tick(instance, own.cursor, other_url)
        assert requested(theirs) == [
            ("2026-02-10", "2026-02-10", ["daily_eval_summary", "daily_usage"]),
            (GATES_JOB, "2026-02-01..2026-02-12", []),
        ]


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
