"""Panels that read the daily tables for whole days show exactly what their queries over the runs show.

Eight days of runs on Postgres (Grafana's database; SQLite is never behind a dashboard), with older
rule versions' checks, an LLM judge's verdicts (some of its calls unpriced), feedback (some runs rated
twice) and the daily tables built as the aggregates assets build them. Every daily-backed panel and
variable runs as Grafana would send it and as its query over the runs alone, over ranges that start
and end mid-day, at midnight, within one day, and longer than the data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from llm_monitoring.core.windows import day_start
from llm_monitoring.fake_data import FakeRunLog, build_dataset, store_dataset, to_run_to_store
from llm_monitoring.grafana import build_dashboards
from llm_monitoring.recompute import rebuild_daily_feedback, rebuild_run_days
from llm_monitoring.samples import AgentProfile, make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import Judgement, store_judgements
from llm_monitoring.storage.schema import eval_checks, feedback, llm_logs
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database
from llm_monitoring_tests.grafana_queries import Selection, panel_interval, to_postgres
from llm_monitoring_tests.history_data import judge_verdict

END = datetime(2026, 2, 10, 15, 37, 12, 250000, tzinfo=UTC)
DAYS = 8
RANGES = {
    "mid-day to mid-day, 6 days": (datetime(2026, 2, 3, 13, 17, 5, 123000, tzinfo=UTC), datetime(2026, 2, 9, 8, 0, 0, 456000, tzinfo=UTC)),
    "midnight to midnight, 4 days": (datetime(2026, 2, 5, tzinfo=UTC), datetime(2026, 2, 9, tzinfo=UTC)),
    "last 24 hours": (END - timedelta(hours=24), END),
    "2 days, one whole": (datetime(2026, 2, 6, 9, 30, tzinfo=UTC), datetime(2026, 2, 8, 9, 30, tzinfo=UTC)),
    "longer than the data": (END - timedelta(days=30), END + timedelta(hours=1)),
}
SELECTIONS = {
    "all": {},
    "one provider": {"provider": Selection(("openai",))},
    "one model and agent": {"model": Selection(("gpt-4o",)), "agent": Selection(("docs_search",))},
}


def _unpriced_run(rng: random.Random, started: datetime, index: int, agent: str | None) -> FakeRunLog:
    profile = AgentProfile(agent or "x", "acme", "mystery-model-9", "mystery-model-9", "Answer briefly.", ("search",))
    run_log = make_run_log(rng, started, profile=profile)
    if agent is None:
        del run_log["agent_name"]
    return FakeRunLog(f"odd_{index}.json", json.dumps(run_log).encode(), started)


def _judgement(log_id: int, created_at: datetime) -> Judgement:
    return judge_verdict(
        log_id,
        created_at,
        passed=log_id % 3 != 0,
        input_tokens=None if log_id % 7 == 0 else 400 + log_id,
        cost=None if log_id % 5 == 0 else Decimal("0.000125"),
    )


@pytest.fixture(scope="module")
def days_of_runs(postgres_server: str) -> Iterator[Database]:
    name, url = create_postgres_database(postgres_server)
    database = Database(url)
    try:
        database.ensure_schema()
        store_dataset(database, build_dataset(400, 24 * DAYS, seed=21, end=END, feedback_rate=0.3))
        rng = random.Random(3)
        odd = [_unpriced_run(rng, END - timedelta(hours=5 + 29 * index), index, "odd_agent" if index % 2 else None) for index in range(6)]
        store_runs(database, [to_run_to_store(run_log) for run_log in odd])
        with database.transaction() as connection:
            log_ids = [log_id for (log_id,) in connection.execute(sa.select(llm_logs.c.id).order_by(llm_logs.c.id))]
            # A re-evaluation that kept the previous rule version's rows of some runs.
            rows = connection.execute(
                sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.passed).where(eval_checks.c.log_id % 4 == 0)
            ).all()
            connection.execute(
                sa.insert(eval_checks),
                [
                    {"log_id": log_id, "check_name": check, "passed": None if passed is None else not passed, "evaluator_version": "1"}
                    for log_id, check, passed in rows
                ],
            )
            # Second ratings: a run rated twice counts once in "Runs with Feedback".
            rated = connection.execute(sa.select(feedback.c.log_id).order_by(feedback.c.log_id).limit(15)).scalars().all()
            connection.execute(
                sa.insert(feedback), [{"log_id": log_id, "is_good": log_id % 2 == 0, "reviewer": "second"} for log_id in rated]
            )
        store_judgements(database, [_judgement(log_id, END) for log_id in log_ids[::3]])
        days = [(END - timedelta(days=offset)).date() for offset in range(DAYS + 1)]
        rebuild_run_days(database, days)
        rebuild_daily_feedback(database, day_start(min(days)), day_start(max(days)) + timedelta(days=1))
        yield database
    finally:
        database.dispose()
        drop_postgres_database(postgres_server, name)


def run(database: Database, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with database.connect() as connection:
        cursor = connection.connection.driver_connection.execute(sql)
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
        connection.rollback()
    return columns, [tuple(row) for row in rows]


def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in a fixed order, numbers as exact values (a time of 1.7e9 as float8 or numeric is the same)."""

    def value(item: Any) -> Any:
        if isinstance(item, bool) or not isinstance(item, (int, float, Decimal)):
            return item
        return Decimal(repr(item) if isinstance(item, float) else item).normalize()

    normalized = [tuple(value(item) for item in row) for row in rows]
    return sorted(normalized, key=lambda row: [(item is None, str(item)) for item in row])


def _dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(build_dashboards.render(name)) for name in build_dashboards.DASHBOARDS}


def _evaluator(database: Database, dashboard: dict[str, Any], time_from: datetime, time_to: datetime) -> Selection:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "evaluator"]
    _, rows = run(database, to_postgres(variable["query"], dashboard, {}, time_from, time_to))
    return Selection((rows[0][0] if rows else "",))


@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("span", list(RANGES))
def test_daily_backed_panels_show_what_the_runs_show(days_of_runs, span, selection):
    database = days_of_runs
    time_from, time_to = RANGES[span]
    compared = 0
    for name, dashboard in _dashboards().items():
        live = build_dashboards.live_queries(name)
        selections = dict(SELECTIONS[selection])
        if any(v["name"] == "evaluator" for v in dashboard["templating"]["list"]):
            selections["evaluator"] = _evaluator(database, dashboard, time_from, time_to)
        queries = [(panel["title"], panel["targets"][0]["rawSql"], panel) for panel in dashboard["panels"]]
        queries += [(f"${v['name']}", v["query"], None) for v in dashboard["templating"]["list"]]
        for title, sql, panel in queries:
            if title not in live:
                continue
            interval = panel_interval(panel, time_to - time_from) if panel else "1m"
            expected = run(database, to_postgres(live[title], dashboard, selections, time_from, time_to, interval))
            shown = run(database, to_postgres(sql, dashboard, selections, time_from, time_to, interval))
            assert shown[0] == expected[0], (name, title)
            assert comparable(shown[1]) == comparable(expected[1]), (name, title, span, selection)
            compared += 1
    assert compared >= 30


# The whole UTC days of each range, [first, end): the start is cut to the second, so a range starting
# at midnight sharp reads its first day from the runs.
WHOLE_DAYS = {
    "mid-day to mid-day, 6 days": (date(2026, 2, 4), date(2026, 2, 9)),
    "midnight to midnight, 4 days": (date(2026, 2, 6), date(2026, 2, 9)),
    "last 24 hours": (date(2026, 2, 10), date(2026, 2, 10)),
    "2 days, one whole": (date(2026, 2, 7), date(2026, 2, 8)),
    "longer than the data": (date(2026, 1, 12), date(2026, 2, 10)),
}


def test_the_daily_table_answers_for_exactly_the_whole_days(days_of_runs):
    """Skewing every daily row moves each range's total by its whole days' rows, and nothing else."""
    overview = _dashboards()["overview.json"]
    (total,) = [panel["targets"][0]["rawSql"] for panel in overview["panels"] if panel["title"] == "Total Requests"]
    with days_of_runs.connect() as connection:
        cursor = connection.connection.driver_connection

        def total_requests() -> dict[str, int]:
            return {span: cursor.execute(to_postgres(total, overview, {}, *RANGES[span])).fetchone()[0] for span in RANGES}

        before = total_requests()
        cursor.execute("UPDATE daily_usage SET runs = runs + 1000")
        after = total_requests()
        rows = {
            span: cursor.execute("SELECT count(*) FROM daily_usage WHERE day >= %s AND day < %s", WHOLE_DAYS[span]).fetchone()[0]
            for span in RANGES
        }
        connection.rollback()
    assert {span: after[span] - before[span] for span in RANGES} == {span: 1000 * rows[span] for span in RANGES}
    assert rows["last 24 hours"] == 0 and rows["2 days, one whole"] > 0


@pytest.mark.parametrize("selection", ["one provider", "one model and agent"])
def test_check_panels_read_the_breakdown_for_some_runs(days_of_runs, selection):
    """With a provider, model or agent chosen, "Eval Checks Logged" still reads the whole days from
    daily_eval_breakdown, the rows of the chosen runs only."""
    eval_json = _dashboards()["eval.json"]
    (logged,) = [panel["targets"][0]["rawSql"] for panel in eval_json["panels"] if panel["title"] == "Eval Checks Logged"]
    span = "mid-day to mid-day, 6 days"
    choice = SELECTIONS[selection]
    selections = {**choice, "evaluator": _evaluator(days_of_runs, eval_json, *RANGES[span])}
    chosen = " AND ".join(f"{COLUMNS[name]} = %s" for name in choice)
    values = [value for name in choice for value in choice[name].values]
    with days_of_runs.connect() as connection:
        cursor = connection.connection.driver_connection
        query = to_postgres(logged, eval_json, selections, *RANGES[span])
        before = cursor.execute(query).fetchone()[0]
        skewed = cursor.execute(
            f"UPDATE daily_eval_breakdown SET runs = runs + 1000 WHERE evaluator_version = %s AND {chosen} AND day >= %s AND day < %s",
            [*selections["evaluator"].values, *values, *WHOLE_DAYS[span]],
        ).rowcount
        after = cursor.execute(query).fetchone()[0]
        connection.rollback()
    assert skewed > 0
    assert after - before == 1000 * skewed


COLUMNS = {"provider": "provider", "model": "model", "agent": "agent_name"}
