"""Quality gates: pass on steady days, fail on the day that breaks them (unpriced models, a pass-rate drop, a cost
spike), judge a look-back plus the days rebuilt, and say once when there is nothing to judge."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from llm_monitoring.config import quality_thresholds
from llm_monitoring.core import evaluation
from llm_monitoring.core.quality import QualityThresholds, days_to_verify_run_by_run, judged_days, pass_rate_findings
from llm_monitoring.defs.keys import AGGREGATES_JOB, GATES_JOB
from llm_monitoring.defs.quality.checks import GateConfig, eval_coverage, recent_parse_failures, unpriced_runs_share
from llm_monitoring.defs.quality.jobs import gates_run_config
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.ledger import record_ingest_error, resolve_ingest_errors
from llm_monitoring_tests.history_data import (
    check_results,
    gives_up,
    run_job,
    store_day,
    store_days,
    unknown_model,
)

PER_DAY = 20


@pytest.fixture
def database(postgres_env_database: Database) -> Database:
    return postgres_env_database


def verdicts(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {
        name: (evaluation.passed, evaluation.metadata["failing_days"].value if "failing_days" in evaluation.metadata else "")
        for name, evaluation in check_results(result).items()
    }


def judge(instance: dg.DagsterInstance, first: date, last: date) -> dg.ExecuteInProcessResult:
    """quality_gates_job asked to judge [first, last] besides the look-back, as the aggregates sensor asks it."""
    from llm_monitoring.definitions import defs

    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    result = defs.resolve_job_def(GATES_JOB).execute_in_process(instance=instance, run_config=gates_run_config(days))
    assert result.success  # failing gates warn; they do not fail the run
    return result


def test_gates_pass_on_steady_days_and_each_fails_on_the_day_that_breaks_it(database: Database, instance: dg.DagsterInstance):
    store_days(database, date(2026, 1, 1), 8, PER_DAY)
    run_job(AGGREGATES_JOB, instance, first="2026-01-01", last="2026-01-08")
    steady = judge(instance, date(2026, 1, 1), date(2026, 1, 8))
    assert {name: passed for name, (passed, _) in verdicts(steady).items()} == {
        "unpriced_runs_share": True,
        "cost_spike": True,
        "pass_rate_drop": True,
        "eval_coverage": True,
        "recent_parse_failures": True,
        "judge_agreement": True,  # no judges declared: nothing to judge
    }
    assert "on each of the 8 judged days with runs" in check_results(steady)["unpriced_runs_share"].description

    store_day(database, date(2026, 1, 9), PER_DAY, mutate=gives_up)  # answers collapse
    store_day(database, date(2026, 1, 10), PER_DAY)
    store_day(database, date(2026, 1, 10), 5, seed=1, mutate=unknown_model)  # a fifth of the runs unpriced
    store_day(database, date(2026, 1, 11), 4 * PER_DAY)  # four times the usual traffic
    run_job(AGGREGATES_JOB, instance, first="2026-01-09", last="2026-01-11")
    bad = judge(instance, date(2026, 1, 9), date(2026, 1, 11))

    found = verdicts(bad)
    assert found["pass_rate_drop"] == (False, "2026-01-09")
    assert found["unpriced_runs_share"] == (False, "2026-01-10")
    assert found["cost_spike"] == (False, "2026-01-11")
    assert found["eval_coverage"][0] and found["recent_parse_failures"][0]
    evaluations = check_results(bad)
    assert evaluations["unpriced_runs_share"].severity == dg.AssetCheckSeverity.WARN
    assert "mystery-model-9000" in evaluations["unpriced_runs_share"].description
    assert "answer" in evaluations["pass_rate_drop"].description

    # One evaluation over every day: each gate fails if any of its days fails, and names them all.
    everything = judge(instance, date(2026, 1, 1), date(2026, 1, 11))
    assert verdicts(everything)["unpriced_runs_share"] == (False, "2026-01-10")
    store_day(database, date(2026, 1, 2), 5, seed=2, mutate=unknown_model)
    run_job(AGGREGATES_JOB, instance, first="2026-01-02", last="2026-01-02")
    twice = check_results(judge(instance, date(2026, 1, 1), date(2026, 1, 11)))["unpriced_runs_share"]
    assert not twice.passed and twice.metadata["failing_days"].value == "2026-01-02, 2026-01-10"
    assert twice.description.startswith("over 5% of runs unpriced on 2 days: 2026-01-02, 2026-01-10 (judged: the last 7 days, ")


def test_a_gate_run_on_its_own_judges_the_last_days_and_says_once_when_there_is_nothing(database: Database, instance: dg.DagsterInstance):
    today = datetime.now(UTC).date()
    context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
    empty = unpriced_runs_share(context)
    assert empty.passed
    assert empty.description == f"nothing to judge: no runs on the judged days ({today - timedelta(days=6)}..{today})"

    store_day(database, today, 4, seed=3, mutate=unknown_model)
    run_job(AGGREGATES_JOB, instance, first=str(today), last=str(today))
    recent = unpriced_runs_share(dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance))
    assert not recent.passed and recent.metadata["failing_days"].value == str(today)

    # Days outside the look-back count only when asked for (a backfill's days, via the config).
    store_day(database, date(2026, 1, 3), 4, seed=4, mutate=unknown_model)
    run_job(AGGREGATES_JOB, instance, first="2026-01-03", last="2026-01-03")
    context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
    assert unpriced_runs_share(context).metadata["failing_days"].value == str(today)
    context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
    asked = unpriced_runs_share(context, GateConfig(days=["2026-01-01..2026-01-05"]))
    assert asked.metadata["failing_days"].value == f"2026-01-03, {today}"


@pytest.mark.parametrize(
    ("today", "lookback", "rebuilt", "expected"),
    [
        (date(2026, 3, 10), 1, [], [date(2026, 3, 10)]),
        (date(2026, 3, 10), 3, [], [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)]),
        (date(2026, 3, 10), 2, [date(2026, 1, 1), date(2026, 3, 10)], [date(2026, 1, 1), date(2026, 3, 9), date(2026, 3, 10)]),
    ],
)
def test_judged_days_are_the_look_back_plus_the_rebuilt_days(today, lookback, rebuilt, expected):
    assert judged_days(today, lookback, rebuilt) == expected


def test_parse_failure_gate_fails_while_a_recent_failure_is_unresolved(database: Database, instance: dg.DagsterInstance):
    context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
    assert recent_parse_failures(context).passed

    record_ingest_error(database, "logs/broken.json", "f" * 64, "truncated JSON: the document ends early", None)
    failing = recent_parse_failures(context)
    assert not failing.passed
    assert failing.metadata["failures_last_24h"].value == 1
    assert "broken.json" in failing.metadata["latest"].value
    assert failing.description == "1 file failed to parse in the last 24 hours (allowed: 0): logs/broken.json"

    resolve_ingest_errors(database, ["f" * 64])
    assert recent_parse_failures(context).passed


def test_eval_coverage_reads_runs_one_by_one_only_where_the_daily_rows_do_not_count_every_run(
    database: Database, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    store_days(database, date(2026, 1, 5), 3, 4)
    run_job(AGGREGATES_JOB, instance, first="2026-01-05", last="2026-01-07")

    def coverage() -> dg.AssetCheckResult:
        context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
        return eval_coverage(context, GateConfig(days=["2026-01-05..2026-01-07"]))

    rebuilt = coverage()
    assert rebuilt.passed and rebuilt.metadata["days_read_run_by_run"].value == 0

    store_day(database, date(2026, 1, 6), 2, seed=5)  # stored since the day was rebuilt: its rows no longer count every run
    added = coverage()
    assert added.passed and added.metadata["days_read_run_by_run"].value == 1

    monkeypatch.setattr(evaluation, "EVALUATOR_VERSION", "3-test")  # a rule change: no run has the new version's rows
    changed = coverage()
    assert not changed.passed
    assert changed.metadata["days_read_run_by_run"].value == 3
    assert changed.metadata["runs_missing_checks"].value == 14
    assert changed.metadata["failing_days"].value == "2026-01-05, 2026-01-06, 2026-01-07"


CHECKS = ("answer_clear", "completeness")


def usage(day: date, runs: int) -> dict:
    return {"day": day, "runs": runs}


def with_rows(day: date, check: str, runs: int, version: str = "2") -> dict:
    return {"day": day, "check_name": check, "evaluator_version": version, "runs": runs}


@pytest.mark.parametrize(
    ("runs_now", "usage_rows", "summary", "read"),
    [
        (5, [usage(date(2026, 1, 5), 2), usage(date(2026, 1, 5), 3)], [with_rows(date(2026, 1, 5), c, 5) for c in CHECKS], False),
        (0, [], [], False),  # no runs: nothing to look at
        (5, [], [], True),  # never rebuilt
        (6, [usage(date(2026, 1, 5), 5)], [with_rows(date(2026, 1, 5), c, 5) for c in CHECKS], True),  # a run stored since
        (5, [usage(date(2026, 1, 5), 5)], [with_rows(date(2026, 1, 5), "answer_clear", 5)], True),  # a check without rows
        (
            5,
            [usage(date(2026, 1, 5), 5)],
            [with_rows(date(2026, 1, 5), "answer_clear", 5), with_rows(date(2026, 1, 5), "completeness", 4)],
            True,
        ),
        (5, [usage(date(2026, 1, 5), 5)], [with_rows(date(2026, 1, 5), c, 5, version="1") for c in CHECKS], True),  # another version's rows
    ],
)
def test_coverage_reads_a_day_run_by_run_unless_its_daily_rows_count_every_run_for_every_check(
    runs_now: int, usage_rows: list[dict], summary: list[dict], read: bool
):
    day = date(2026, 1, 5)
    assert days_to_verify_run_by_run([day], {day: runs_now}, usage_rows, summary, "2", CHECKS) == ([day] if read else [])


def summary_rows(day: date, check: str, passed: int, applicable: int) -> dict:
    return {"day": day, "check_name": check, "passed": passed, "applicable": applicable}


@pytest.mark.parametrize(
    ("day_passed", "day_applicable", "flagged"),
    [
        (12, 20, False),  # 60% vs 85%: a dip that 20 runs make ordinary
        (2, 20, True),  # 10% vs 85%: a collapse
        (160, 200, False),  # 80% vs 85%: within the allowed drop
        (100, 200, True),  # 50% vs 85% on a busy day
        (1, 10, False),  # too few runs to judge
    ],
)
def test_pass_rate_gate_needs_a_drop_both_large_and_significant(day_passed: int, day_applicable: int, flagged: bool):
    baseline = [summary_rows(date(2026, 1, n), "answer_clear", 17, 20) for n in range(1, 8)]
    today = summary_rows(date(2026, 1, 8), "answer_clear", day_passed, day_applicable)
    findings, _ = pass_rate_findings([*baseline, today], [date(2026, 1, 8)], QualityThresholds())
    assert bool(findings) is flagged


def test_thresholds_come_from_the_environment():
    thresholds = quality_thresholds({"QUALITY_MAX_UNPRICED_SHARE": "0.25", "QUALITY_COST_SPIKE_FACTOR": "3"})
    assert (thresholds.max_unpriced_share, thresholds.cost_spike_factor) == (0.25, 3.0)
    with pytest.raises(ValueError, match="QUALITY_BASELINE_DAYS"):
        quality_thresholds({"QUALITY_BASELINE_DAYS": "a week"})
