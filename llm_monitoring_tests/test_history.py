"""Re-pricing and re-evaluation backfills on Postgres: one run per range, exactly the right rows, no duplicates."""

import dataclasses
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from genai_prices import data_snapshot
from genai_prices.types import ModelPrice

from llm_monitoring.core import evaluation
from llm_monitoring.core.pricing import forget_price_data
from llm_monitoring.defs.quality.jobs import gates_run_config
from llm_monitoring.samples import PROFILES
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import daily_eval_summary, daily_usage, eval_checks, llm_logs
from llm_monitoring_tests.history_data import (
    check_results,
    day_of,
    materializations,
    metadata,
    run_job,
    sample_run,
    select,
    store_day,
    store_days,
)

NEW_INPUT_PER_MTOK = Decimal("10")
NEW_OUTPUT_PER_MTOK = Decimal("40")


@pytest.fixture
def database(postgres_env_database: Database) -> Database:
    return postgres_env_database


def defs_job(name: str):
    from llm_monitoring.definitions import defs

    return defs.resolve_job_def(name)


def runs_launched(instance: dg.DagsterInstance, action) -> tuple[int, dg.ExecuteInProcessResult]:
    before = instance.get_runs_count()
    result = action()
    return instance.get_runs_count() - before, result


@contextmanager
def gpt_4o_mini_price_change() -> Iterator[None]:
    """Price data in which OpenAI's gpt-4o-mini costs $10 in / $40 out per million tokens (cache reads at $10)."""

    def changed(provider):
        if provider.id != "openai":
            return provider
        models = [
            dataclasses.replace(
                model,
                prices=ModelPrice(input_mtok=NEW_INPUT_PER_MTOK, cache_read_mtok=NEW_INPUT_PER_MTOK, output_mtok=NEW_OUTPUT_PER_MTOK),
            )
            if model.id == "gpt-4o-mini"
            else model
            for model in provider.models
        ]
        return dataclasses.replace(provider, models=models)

    providers = [changed(provider) for provider in data_snapshot.get_snapshot().providers]
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=providers, from_auto_update=False))
    forget_price_data()
    try:
        yield
    finally:
        data_snapshot.set_custom_snapshot(None)
        forget_price_data()


def cost_rows(database: Database) -> dict[int, tuple]:
    return {
        row.id: (
            row.model,
            row.run_started_at,
            row.total_input_tokens,
            row.total_output_tokens,
            row.input_cost,
            row.output_cost,
            row.total_cost,
            row.pricing_status,
            row.price_data_version,
        )
        for row in select(database, sa.select(llm_logs))
    }


def test_reprice_backfill_is_one_run_and_reprices_exactly_the_changed_model_in_the_range(database: Database, instance: dg.DagsterInstance):
    store_days(database, date(2026, 1, 5), 5, 10)
    rng = random.Random(7)
    faq = PROFILES[0]
    # Partition edges: the last instant of the 8th is in the range, midnight of the 9th is not.
    edge_runs = [
        sample_run(rng, datetime(2026, 1, 8, 23, 59, 59, 500000, tzinfo=UTC), faq),
        sample_run(rng, datetime(2026, 1, 9, 0, 0, 0, tzinfo=UTC), faq),
    ]
    store_runs(database, edge_runs)
    before = cost_rows(database)
    checks_before = count_rows(database, eval_checks)

    with gpt_4o_mini_price_change():
        runs, result = runs_launched(instance, lambda: run_job("reprice_logs", instance, first="2026-01-06", last="2026-01-08"))

    assert result.success
    assert runs == 1
    found = materializations(result)
    assert [m.partition for m in found["log_costs"]] == ["2026-01-06", "2026-01-07", "2026-01-08"]
    assert [m.partition for m in found["daily_usage"]] == ["2026-01-06", "2026-01-07", "2026-01-08"]

    after = cost_rows(database)
    assert after.keys() == before.keys()
    assert count_rows(database, eval_checks) == checks_before
    in_range = lambda started: date(2026, 1, 6) <= day_of(started) <= date(2026, 1, 8)  # noqa: E731
    changed = {log_id for log_id, row in before.items() if row[0] == "gpt-4o-mini" and in_range(row[1])}
    assert len(changed) == 3 * 2 + 1  # two faq_agent runs a day, plus the run at 23:59:59.5
    for log_id, row in before.items():
        model, started, input_tokens, output_tokens = row[:4]
        if log_id in changed:
            expected_input = Decimal(input_tokens) * NEW_INPUT_PER_MTOK / 1_000_000
            expected_output = Decimal(output_tokens) * NEW_OUTPUT_PER_MTOK / 1_000_000
            assert after[log_id][4:7] == (expected_input, expected_output, expected_input + expected_output)
            assert after[log_id][6] != row[6]
        else:
            assert after[log_id] == row, f"run {log_id} ({model}, {started}) must not change"

    costs = metadata(found["log_costs"][0])
    assert costs["runs"] == 10 * 3 + 1
    assert costs["runs_with_new_cost"] == len(changed)
    expected_delta = sum(after[i][6] - before[i][6] for i in changed)
    assert Decimal(str(costs["cost_delta_usd"])).quantize(Decimal("1e-9")) == expected_delta.quantize(Decimal("1e-9"))

    usage = select(database, sa.select(daily_usage).where(daily_usage.c.model == "gpt-4o-mini").order_by(daily_usage.c.day))
    assert [row.day for row in usage] == [date(2026, 1, 6), date(2026, 1, 7), date(2026, 1, 8)]
    for row in usage:
        assert row.total_cost == sum(after[i][6] for i in changed if day_of(after[i][1]) == row.day)

    with gpt_4o_mini_price_change():
        again = run_job("reprice_logs", instance, first="2026-01-06", last="2026-01-08")
    assert metadata(materializations(again)["log_costs"][0])["rows_updated"] == 0
    assert cost_rows(database) == after
    usage_days = [
        row.day
        for row in select(database, sa.select(daily_usage.c.day, daily_usage.c.provider, daily_usage.c.model, daily_usage.c.agent_name))
    ]
    assert len(usage_days) == 3 * len(PROFILES)  # rebuilt twice, stored once


def test_failed_price_refresh_is_reported_and_the_installed_prices_are_kept(database: Database, instance: dg.DagsterInstance):
    store_day(database, date(2026, 1, 5), 5)
    before = cost_rows(database)
    config = {"ops": {"log_costs": {"config": {"refresh_prices": True, "price_update_url": "http://127.0.0.1:9/data.json"}}}}

    result = run_job("reprice_logs", instance, first="2026-01-05", last="2026-01-05", run_config=config)

    assert result.success
    costs = metadata(materializations(result)["log_costs"][0])
    assert "failed" in costs["price_refresh"] and "installed" in costs["price_refresh"]
    assert costs["rows_updated"] == 0
    assert cost_rows(database) == before


def check_rows_by_version(database: Database) -> dict[str, list[tuple]]:
    rows = select(
        database, sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.evaluator_version, eval_checks.c.passed)
    )
    versions: dict[str, list[tuple]] = {}
    for log_id, name, version, passed in rows:
        versions.setdefault(version, []).append((log_id, name, passed))
    return versions


def test_reevaluate_backfill_replaces_the_current_version_rows_and_keeps_earlier_versions(
    database: Database, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    ids = store_days(database, date(2026, 1, 5), 3, 6)
    old_version = evaluation.EVALUATOR_VERSION
    v2_before = sorted(check_rows_by_version(database)[old_version])
    assert len(v2_before) == 18 * 7
    # A rule change: answers now need 100,000 words to be clear, and the version says so.
    monkeypatch.setattr(evaluation, "EVALUATOR_VERSION", "3-test")
    monkeypatch.setattr(evaluation, "CLEAR_MIN_WORDS", 100_000)

    runs, result = runs_launched(instance, lambda: run_job("reevaluate_logs", instance, first="2026-01-06", last="2026-01-07"))

    assert result.success and runs == 1
    found = materializations(result)
    assert [m.partition for m in found["log_evaluations"]] == ["2026-01-06", "2026-01-07"]
    first = metadata(found["log_evaluations"][0])
    assert (first["runs"], first["rows_deleted"], first["rows_inserted"], first["other_version_rows_kept"]) == (12, 0, 84, 84)
    versions = check_rows_by_version(database)
    assert sorted(versions[old_version]) == v2_before
    new_rows = versions["3-test"]
    in_range = set(ids[date(2026, 1, 6)] + ids[date(2026, 1, 7)])
    assert {log_id for log_id, _, _ in new_rows} == in_range
    assert len(new_rows) == len({(log_id, name) for log_id, name, _ in new_rows}) == 12 * 7
    assert {passed for _, name, passed in new_rows if name == "answer_clear"} <= {False, None}
    assert True in {passed for _, name, passed in versions[old_version] if name == "answer_clear"}
    assert not check_results(result)  # no gates in a run over a range of days: quality_gates_job judges them after
    gates = defs_job("quality_gates_job").execute_in_process(
        instance=instance, run_config=gates_run_config([date(2026, 1, 6), date(2026, 1, 7)])
    )
    assert check_results(gates)["eval_coverage"].passed
    wider = defs_job("quality_gates_job").execute_in_process(
        instance=instance, run_config=gates_run_config([date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)])
    )
    coverage = check_results(wider)["eval_coverage"]
    assert not coverage.passed and coverage.metadata["failing_days"].value == "2026-01-05"  # re-evaluated 6th and 7th only

    summary = select(database, sa.select(daily_eval_summary).where(daily_eval_summary.c.check_name == "answer_clear"))
    assert {(row.day, row.evaluator_version) for row in summary} == {
        (day, version) for day in (date(2026, 1, 6), date(2026, 1, 7)) for version in (old_version, "3-test")
    }
    assert {row.pass_rate for row in summary if row.evaluator_version == "3-test"} == {0.0}

    again = run_job("reevaluate_logs", instance, first="2026-01-06", last="2026-01-07")
    repeat = metadata(materializations(again)["log_evaluations"][0])
    assert (repeat["rows_deleted"], repeat["rows_inserted"], repeat["verdicts_changed"]) == (84, 84, 0)
    assert sorted(check_rows_by_version(database)["3-test"]) == sorted(new_rows)

    drop_old = {"ops": {"log_evaluations": {"config": {"keep_other_versions": False}}}}
    run_job("reevaluate_logs", instance, first="2026-01-07", last="2026-01-07", run_config=drop_old)
    versions = check_rows_by_version(database)
    assert {log_id for log_id, _, _ in versions[old_version]} == set(ids[date(2026, 1, 5)] + ids[date(2026, 1, 6)])
    assert len(versions["3-test"]) == 12 * 7


def test_reevaluation_never_deletes_or_rewrites_llm_judges_rows(
    database: Database, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    from pydantic_ai.models.test import TestModel

    from llm_monitoring.core.judges import Judge
    from llm_monitoring.judging import judge_window
    from llm_monitoring.storage.schema import judge_calls

    ids = store_days(database, date(2026, 1, 5), 2, 4)
    helpfulness = Judge(name="helpfulness", model="openai:gpt-4o-mini", rubric="Q: {prompt} A: {answer}")
    judge_window(
        database, [helpfulness], datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC), model_factory=lambda judge: TestModel()
    )
    judge_rows = sa.select(eval_checks).where(eval_checks.c.evaluator_version == helpfulness.version).order_by(eval_checks.c.id)
    before = [tuple(row) for row in select(database, judge_rows)]
    assert len(before) == 8
    monkeypatch.setattr(evaluation, "EVALUATOR_VERSION", "3-test")

    kept = run_job("reevaluate_logs", instance, first="2026-01-05", last="2026-01-06")
    assert metadata(materializations(kept)["log_evaluations"][0])["other_version_rows_kept"] == 8 * 7  # the judges' rows are not counted
    drop_old = {"ops": {"log_evaluations": {"config": {"keep_other_versions": False}}}}
    dropped = run_job("reevaluate_logs", instance, first="2026-01-05", last="2026-01-06", run_config=drop_old)
    assert dropped.success
    versions = check_rows_by_version(database)
    assert set(versions) == {"3-test", helpfulness.version}  # the old rule version went, the judge's stayed
    assert [tuple(row) for row in select(database, judge_rows)] == before  # neither deleted nor rewritten
    assert len(select(database, sa.select(judge_calls))) == len(ids[date(2026, 1, 5)]) * 2


def test_eval_coverage_names_the_days_left_to_reevaluate(database: Database, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch):
    store_days(database, date(2026, 1, 5), 3, 3)
    monkeypatch.setattr(evaluation, "EVALUATOR_VERSION", "3-test")
    run_job("reevaluate_logs", instance, first="2026-01-06", last="2026-01-06")
    from llm_monitoring.defs.quality.checks import GateConfig, eval_coverage
    from llm_monitoring.defs.resources import DatabaseResource

    context = dg.build_asset_check_context(resources={"database": DatabaseResource()}, instance=instance)
    outcome = eval_coverage(context, GateConfig(days=["2026-01-01..2026-01-31"]))

    assert not outcome.passed
    assert outcome.severity == dg.AssetCheckSeverity.ERROR
    assert outcome.metadata["runs_missing_checks"].value == 6
    assert outcome.metadata["backfill_range"].value == "2026-01-05..2026-01-07"
    assert outcome.metadata["failing_days"].value == "2026-01-05, 2026-01-07"
    assert "backfill reevaluate_logs over 2026-01-05, 2026-01-07" in outcome.description
