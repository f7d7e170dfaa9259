"""The Grafana dashboards: every panel's SQL runs on a real Postgres filled with fake data.

No Grafana server runs here, so the test does what Grafana does before a query reaches Postgres
(grafana_queries.py: the variables, the interval and the datasource's macros).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from llm_monitoring.core.agreement import agreement_by_version
from llm_monitoring.core.evaluation import EVALUATOR_VERSION
from llm_monitoring.fake_data import FakeRunLog, build_dataset, store_dataset, to_run_to_store
from llm_monitoring.grafana import build_dashboards, panels
from llm_monitoring.grafana.whole_days import FIRST_DAY
from llm_monitoring.recompute import rebuild_daily_feedback, rebuild_run_days
from llm_monitoring.samples import AgentProfile, make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import Judgement, store_judgements, verdict_reviewer_pairs
from llm_monitoring.storage.schema import eval_checks, llm_logs
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database
from llm_monitoring_tests.grafana_queries import Selection, expand_macros, panel_interval, to_postgres
from llm_monitoring_tests.history_data import JUDGE_VERSION, judge_verdict

GRAFANA = Path(build_dashboards.__file__).parent
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
FAKE_RUNS = 300

PROTOTYPE_PANELS = {
    "LLM Monitoring - Overview": {
        "Total Requests",
        "Total Cost",
        "Requests Over Time",
        "Tokens Over Time",
        "Requests by Model",
        "Last 5 Requests",
    },
    "LLM Monitoring - Eval": {"Eval Checks Logged", "Pass Rate by Check", "Checks Over Time", "Recent Checks"},
    "LLM Monitoring - Feedback": {"Good Feedback %", "Feedback Count", "Good / Bad", "Recent Feedback"},
}
ADDED_PANELS = {
    "LLM Monitoring - Overview": {"Cost by Model Over Time", "Tokens by Type", "Duration p50 / p95", "Unpriced Runs"},
    "LLM Monitoring - Eval": {
        "Pass Rate Over Time by Check",
        "Judge Verdicts",
        "Judge Pass Rate",
        "Judge Cost",
        "Judge Pass Rate by Version",
        "Judge Agreement with Reviewers (Cohen's kappa)",
    },
    "LLM Monitoring - Feedback": {"Feedback Over Time"},
}


def test_macro_expansion_matches_grafanas_documented_output():
    start = datetime(2017, 7, 18, 11, 15, 52, tzinfo=UTC)
    end = datetime(2017, 7, 18, 11, 25, 52, 500000, tzinfo=UTC)
    assert expand_macros("WHERE $__timeFilter(time_column)", start, end) == (
        "WHERE time_column BETWEEN '2017-07-18T11:15:52Z' AND '2017-07-18T11:25:52.5Z'"
    )
    assert expand_macros("SELECT $__timeGroupAlias(t, 5m)", start, end) == 'SELECT floor(extract(epoch from t)/300)*300 AS "time"'
    assert expand_macros("SELECT $__timeGroup(t, 1h), v", start, end) == 'SELECT floor(extract(epoch from t)/3600)*3600 AS "time", v'
    assert expand_macros("GROUP BY $__timeGroup(t, 2w)", start, end) == "GROUP BY floor(extract(epoch from t)/1.2096e+06)*1.2096e+06"
    assert expand_macros("$__timeFrom() $__timeTo()", start, end) == "'2017-07-18T11:15:52Z' '2017-07-18T11:25:52.5Z'"


def test_intervals_and_epoch_seconds_are_what_grafana_sends():
    panel = {"maxDataPoints": 50, "gridPos": {"w": 12}}
    spans = [timedelta(minutes=10), timedelta(hours=24), timedelta(days=7), timedelta(days=30), timedelta(days=365)]
    # rangeutil.roundInterval of the range over maxDataPoints, never under the datasource's 1m
    assert [panel_interval(panel, span) for span in spans] == ["1m", "30m", "3h", "12h", "7d"]
    start = datetime(2017, 7, 18, 11, 15, 52, 999000, tzinfo=UTC)
    dashboard = {"templating": {"list": []}}
    assert to_postgres("$__unixEpochFrom() $__unixEpochTo()", dashboard, {}, start, start + timedelta(hours=1)) == "1500376552 1500380152"


# ---------------------------------------------------------------------------- the files


def load_dashboards() -> dict[str, dict[str, Any]]:
    dashboards = {}
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        dashboards[dashboard["title"]] = dashboard
    return dashboards


def provisioned_datasource() -> dict[str, Any]:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasource.yaml").read_text())
    (datasource,) = config["datasources"]
    return datasource


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_files_are_what_the_generator_writes():
    assert {path.name for path in DASHBOARD_FILES} == set(build_dashboards.DASHBOARDS)
    for path in DASHBOARD_FILES:
        assert path.read_text(encoding="utf-8") == build_dashboards.render(path.name), (
            f"{path.name} is stale: run `uv run python -m llm_monitoring.grafana.build_dashboards`"
        )


def test_three_dashboards_are_valid_with_a_24_hour_default_range():
    dashboards = load_dashboards()
    assert set(dashboards) == set(PROTOTYPE_PANELS)
    uids = [dashboard["uid"] for dashboard in dashboards.values()]
    assert len(set(uids)) == 3
    for dashboard in dashboards.values():
        assert dashboard["time"] == {"from": "now-24h", "to": "now"}
        assert isinstance(dashboard["schemaVersion"], int)
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"] and all(target["rawSql"].strip() for target in panel["targets"])


def test_every_prototype_panel_and_the_requested_new_ones_are_present():
    for title, dashboard in load_dashboards().items():
        titles = {panel["title"] for panel in dashboard["panels"]}
        assert PROTOTYPE_PANELS[title] <= titles, PROTOTYPE_PANELS[title] - titles
        assert ADDED_PANELS[title] <= titles, ADDED_PANELS[title] - titles


def test_every_panel_and_variable_uses_the_provisioned_datasource():
    datasource = provisioned_datasource()
    assert datasource["uid"] == panels.DATASOURCE_UID
    for dashboard in load_dashboards().values():
        for panel, target in panel_targets(dashboard):
            assert panel["datasource"] == {"type": datasource["type"], "uid": datasource["uid"]}, panel["title"]
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == datasource["uid"], variable["name"]


def test_datasource_credentials_come_from_the_environment():
    datasource = provisioned_datasource()
    assert datasource["url"] == "${POSTGRES_HOST}:${POSTGRES_PORT}"
    assert datasource["user"] == "${POSTGRES_USER}"
    assert datasource["jsonData"]["database"] == "${POSTGRES_DB}"
    assert datasource["secureJsonData"]["password"] == "${POSTGRES_PASSWORD}"


def test_every_query_honours_the_time_range_on_run_time_and_the_three_filters():
    for dashboard in load_dashboards().values():
        assert {"provider", "model", "agent"} <= {variable["name"] for variable in dashboard["templating"]["list"]}
        for variable in dashboard["templating"]["list"]:
            if variable["name"] in {"provider", "model", "agent"}:
                assert variable["multi"] and variable["includeAll"] and variable["allValue"]
        for panel, target in panel_targets(dashboard):
            sql = target["rawSql"]
            # run time, or its UTC day in the daily_usage aggregate
            filtered = set(re.findall(r"\$__timeFilter\(([^)]*)\)", sql))
            assert filtered in ({"l.run_started_at"}, {"d.day::timestamptz"}), panel["title"]
            # A daily table adding whole days to the runs reads exactly the range's whole days.
            whole_days = f"d.day >= date '1970-01-01' + {FIRST_DAY}"
            assert "FROM daily_" not in sql or filtered == {"d.day::timestamptz"} or whole_days in sql, panel["title"]
            for name in ("provider", "model", "agent"):
                assert f"IN (${name})" in sql, (panel["title"], name)


def test_pass_rates_leave_not_applicable_checks_out_and_costs_are_in_usd():
    dashboards = load_dashboards()
    for panel, target in panel_targets(dashboards["LLM Monitoring - Eval"]):
        if "Pass" in panel["title"]:
            live = build_dashboards.live_queries("eval.json")[panel["title"]]
            assert "nullif(count(e.passed), 0)" in live, panel["title"]
            # added up from daily_eval_summary: passed / applicable of both parts
            assert "100.0 * sum(passed)::bigint / nullif(sum(applicable)::bigint, 0)" in target["rawSql"], panel["title"]
        # Rule checks: one evaluator version at a time; LLM judges: their own versions, never mixed in.
        version = "e.evaluator_version LIKE 'judge:%'" if panel["title"].startswith("Judge") else "e.evaluator_version = '${evaluator}'"
        assert version in target["rawSql"], panel["title"]
    for title in ("Total Cost", "Cost by Model Over Time", "Avg Cost per Request"):
        (panel,) = [p for p in dashboards["LLM Monitoring - Overview"]["panels"] if p["title"] == title]
        assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUSD"


# ---------------------------------------------------------------------------- the queries on Postgres


def _odd_run(rng: random.Random, started: datetime, *, provider: str, model: str, agent: str | None, index: int) -> FakeRunLog:
    profile = AgentProfile(agent or "x", provider, model, model, "Answer briefly. Include references.", ("search",))
    run_log = make_run_log(rng, started, profile=profile)
    if agent is None:
        del run_log["agent_name"]
    return FakeRunLog(f"odd_{index}.json", json.dumps(run_log).encode(), started)


@pytest.fixture(scope="module")
def filled(postgres_server: str) -> Iterator[tuple[Database, datetime]]:
    """300 fake runs over the last 24 h, plus an unpriced run, a run without agent, and older-version checks."""
    name, url = create_postgres_database(postgres_server)
    database = Database(url)
    try:
        database.ensure_schema()
        now = datetime.now(UTC)
        store_dataset(database, build_dataset(FAKE_RUNS, 24, seed=11, end=now - timedelta(minutes=1)))
        rng = random.Random(5)
        odd = [
            _odd_run(rng, now - timedelta(hours=2), provider="acme", model="mystery-model-9", agent="odd_agent", index=1),
            _odd_run(rng, now - timedelta(hours=3), provider="openai", model="gpt-4o-mini", agent=None, index=2),
        ]
        store_runs(database, [to_run_to_store(run_log) for run_log in odd])
        with database.transaction() as connection:
            # A re-evaluation that kept the previous version's rows for some runs.
            rows = connection.execute(
                sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.passed).where(eval_checks.c.log_id <= 20)
            ).all()
            connection.execute(
                sa.insert(eval_checks),
                [
                    {
                        "log_id": log_id,
                        "check_name": check,
                        "passed": not passed if passed is not None else None,
                        "score": None,
                        "details": "older rules",
                        "evaluator_version": "1",
                    }
                    for log_id, check, passed in rows
                ],
            )
        # An LLM judge's verdicts on every other run, with their calls' cost.
        judged = [log_id for (log_id,) in connection_rows(database, sa.select(llm_logs.c.id).order_by(llm_logs.c.id))][::2]
        store_judgements(database, [fake_judgement(log_id, now) for log_id in judged])
        # The daily tables, as the ingest and Dagster's sensor keep them.
        days = [(now + timedelta(days=offset)).date() for offset in range(-2, 1)]
        rebuild_run_days(database, days)
        rebuild_daily_feedback(database, now - timedelta(days=2), now + timedelta(days=1))
        yield database, now
    finally:
        database.dispose()
        drop_postgres_database(postgres_server, name)


JUDGE_CALL_COST = Decimal("0.000125")


def fake_judgement(log_id: int, now: datetime) -> Judgement:
    return judge_verdict(log_id, now, passed=log_id % 3 != 0, cost=JUDGE_CALL_COST)


def connection_rows(database: Database, statement: sa.Select) -> list[tuple[Any, ...]]:
    with database.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]


def run_query(database: Database, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The SQL as Grafana sends it: text without parameters (so a "%" is just a character)."""
    with database.connect() as connection:
        cursor = connection.connection.driver_connection.execute(sql)
        columns = [column.name for column in cursor.description]
        rows = [tuple(row) for row in cursor.fetchall()]
        connection.rollback()
        return columns, rows


def variable_options(
    database: Database, dashboard: dict[str, Any], name: str, time_from: datetime, time_to: datetime, selections: dict[str, Selection]
) -> list[str]:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert variable["datasource"]["uid"] == panels.DATASOURCE_UID
    _, rows = run_query(database, to_postgres(variable["query"], dashboard, selections, time_from, time_to))
    return [str(row[0]) for row in rows]


def run_dashboard(
    database: Database, dashboard: dict[str, Any], selections: dict[str, Selection], time_from: datetime, time_to: datetime, interval: str
) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every panel's result by title, with the evaluator variable set as Grafana would (its first option)."""
    selections = dict(selections)
    if any(v["name"] == "evaluator" for v in dashboard["templating"]["list"]):
        versions = variable_options(database, dashboard, "evaluator", time_from, time_to, selections)
        # With no option Grafana leaves the variable empty.
        selections["evaluator"] = Selection((versions[0] if versions else "",))
    results = {}
    for panel, target in panel_targets(dashboard):
        sql = to_postgres(target["rawSql"], dashboard, selections, time_from, time_to, interval)
        assert "$" not in sql.replace("$$", ""), f"{panel['title']}: unexpanded {sql}"
        try:
            columns, rows = run_query(database, sql)
        except psycopg.Error as error:
            pytest.fail(f"{dashboard['title']} / {panel['title']}: {error}\n{sql}")
        if target["format"] == "time_series":
            assert columns[0] == "time", (panel["title"], columns)
            times = [row[0] for row in rows]
            assert times == sorted(times), f"{panel['title']}: time series must be sorted by time"
            for row in rows:
                for column, value in zip(columns[1:], row[1:], strict=True):
                    if column != "metric":
                        assert value is None or isinstance(value, (int, float, Decimal)), (panel["title"], column, value)
        results[panel["title"]] = (columns, rows)
    return results


SELECTIONS = {
    "all": {},
    "one provider": {"provider": Selection(("openai",))},
    "one model and agent": {"model": Selection(("gpt-4o",)), "agent": Selection(("docs_search",))},
    "two providers": {"provider": Selection(("openai", "anthropic"))},
}


@pytest.mark.parametrize("interval", ["1m", "30m", "1d"])
@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_every_panel_query_runs_on_postgres_with_fake_data(filled, selection, interval):
    database, now = filled
    for dashboard in load_dashboards().values():
        results = run_dashboard(database, dashboard, SELECTIONS[selection], now - timedelta(hours=24), now, interval)
        assert len(results) == len(dashboard["panels"])


def test_panels_show_the_runs_of_the_range_and_selection(filled):
    database, now = filled
    dashboards = load_dashboards()
    day = (now - timedelta(hours=24), now)
    overview = run_dashboard(database, dashboards["LLM Monitoring - Overview"], {}, *day, "30m")
    assert overview["Total Requests"][1] == [(FAKE_RUNS + 2,)]  # "All" keeps the run without an agent
    assert overview["Unpriced Runs"][1] == [(1,)]
    assert [row[:2] for row in overview["Unpriced Runs by Model"][1]] == [("acme", "mystery-model-9")]
    assert float(overview["Total Cost"][1][0][0]) > 0
    assert len(overview["Last 5 Requests"][1]) == 5
    assert sum(row[1] for row in overview["Requests Over Time"][1]) == FAKE_RUNS + 2
    # the long-range panels read the daily aggregate: the same runs and cost, by UTC day
    long_range = run_dashboard(database, dashboards["LLM Monitoring - Overview"], {}, now - timedelta(days=2), now, "1d")
    assert sum(row[1] for row in long_range["Daily Runs and Unpriced Runs (long ranges)"][1]) == FAKE_RUNS + 2
    assert sum(row[2] for row in long_range["Daily Cost by Model (long ranges)"][1]) == sum(
        row[2]
        for row in run_dashboard(database, dashboards["LLM Monitoring - Overview"], {}, now - timedelta(days=2), now, "1d")[
            "Cost by Model Over Time"
        ][1]
    )

    openai = run_dashboard(database, dashboards["LLM Monitoring - Overview"], {"provider": Selection(("openai",))}, *day, "30m")
    _, by_model = openai["Requests by Model"]
    assert {model for model, _ in by_model} <= {"gpt-4o", "gpt-4o-mini"}
    assert openai["Total Requests"][1][0][0] == sum(count for _, count in by_model)


def test_variables_list_what_ran_in_the_range(filled):
    database, now = filled
    dashboard = load_dashboards()["LLM Monitoring - Overview"]
    day = (now - timedelta(hours=24), now)
    assert variable_options(database, dashboard, "provider", *day, {}) == ["acme", "anthropic", "google-gla", "openai"]
    assert variable_options(database, dashboard, "model", *day, {"provider": Selection(("openai",))}) == ["gpt-4o", "gpt-4o-mini"]
    assert "odd_agent" in variable_options(database, dashboard, "agent", *day, {})
    long_ago = (now - timedelta(days=400), now - timedelta(days=399))
    assert variable_options(database, dashboard, "provider", *long_ago, {}) == []


def test_pass_rates_count_one_evaluator_version_and_leave_not_applicable_out(filled):
    database, now = filled
    dashboard = load_dashboards()["LLM Monitoring - Eval"]
    day = (now - timedelta(hours=24), now)
    assert variable_options(database, dashboard, "evaluator", *day, {}) == [EVALUATOR_VERSION, "1"]
    results = run_dashboard(database, dashboard, {}, *day, "30m")
    assert results["Eval Checks Logged"][1] == [((FAKE_RUNS + 2) * 7,)]
    with database.connect() as connection:
        expected = dict(
            connection.execute(
                sa.select(
                    eval_checks.c.check_name,
                    100.0 * sa.func.count().filter(eval_checks.c.passed.is_(True)) / sa.func.nullif(sa.func.count(eval_checks.c.passed), 0),
                )
                .where(eval_checks.c.evaluator_version == EVALUATOR_VERSION)
                .group_by(eval_checks.c.check_name)
            ).all()
        )
    columns, rows = results["Pass Rate by Check"]
    assert columns[:2] == ["Check", "Pass %"]
    assert {check: pytest.approx(float(rate)) for check, rate, *_ in rows} == {k: pytest.approx(float(v)) for k, v in expected.items()}


def test_judge_panels_show_verdicts_cost_and_the_kappa_core_computes(filled):
    database, now = filled
    results = run_dashboard(database, load_dashboards()["LLM Monitoring - Eval"], {}, now - timedelta(hours=24), now, "30m")
    verdicts = connection_rows(
        database, sa.select(eval_checks.c.log_id, eval_checks.c.passed).where(eval_checks.c.evaluator_version == JUDGE_VERSION)
    )
    assert results["Judge Verdicts"][1] == [(len(verdicts),)]
    assert Decimal(results["Judge Cost"][1][0][0]) == JUDGE_CALL_COST * len(verdicts)
    (by_version,) = results["Judge Pass Rate by Version"][1]
    assert by_version[:4] == ("helpfulness", JUDGE_VERSION, "openai:gpt-4o-mini", len(verdicts))
    assert float(by_version[4]) == pytest.approx(100 * sum(passed for _, passed in verdicts) / len(verdicts))
    (agreement,) = agreement_by_version(verdict_reviewer_pairs(database, [JUDGE_VERSION]))
    ((judge, version, pairs, agreement_pct, kappa),) = results["Judge Agreement with Reviewers (Cohen's kappa)"][1]
    assert (judge, version, pairs) == ("helpfulness", JUDGE_VERSION, agreement.pairs) and pairs > 50
    assert agreement_pct == pytest.approx(100 * agreement.raw_agreement)
    assert kappa == pytest.approx(agreement.kappa)
    # The rule panels count the rule version only: the judge's verdicts are not checks of it.
    assert results["Eval Checks Logged"][1] == [((FAKE_RUNS + 2) * 7,)]


def test_feedback_panels_show_the_generated_shares(filled):
    database, now = filled
    results = run_dashboard(database, load_dashboards()["LLM Monitoring - Feedback"], {}, now - timedelta(hours=24), now, "30m")
    assert results["Feedback Count"][1] == [(FAKE_RUNS // 2,)]
    assert float(results["Good Feedback %"][1][0][0]) == pytest.approx(65, abs=1)
    good, bad = results["Good / Bad"][1][0]
    assert good + bad == FAKE_RUNS // 2
    assert len(results["Recent Feedback"][1]) == 10


def test_an_empty_time_range_gives_empty_panels_not_errors(filled):
    database, now = filled
    long_ago = (now - timedelta(days=400), now - timedelta(days=399))
    for dashboard in load_dashboards().values():
        results = run_dashboard(database, dashboard, {}, *long_ago, "30m")
        if dashboard["title"] == "LLM Monitoring - Overview":
            assert results["Total Requests"][1] == [(0,)]
            assert results["Requests Over Time"][1] == []
