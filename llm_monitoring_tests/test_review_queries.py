"""The review app's reads at any history length: pages from a PageKey, totals from run_day_totals, the check
filter from check_verdicts; each checked against the runs themselves after every kind of write."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from llm_monitoring.core.records import CheckResult, PriceResult
from llm_monitoring.feedback import save_feedback
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.samples import PROFILES, make_run_log
from llm_monitoring.storage.bulk import RunToStore, store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.history import PricingRow, replace_checks_in_window, reprice_window
from llm_monitoring.storage.judgements import Judgement, store_judgements
from llm_monitoring.storage.retention import delete_runs_before
from llm_monitoring.storage.review import RunFilters, list_runs, page_key
from llm_monitoring.storage.review_totals import run_totals
from llm_monitoring.storage.rollups import current_checks
from llm_monitoring.storage.runs import purge_origin
from llm_monitoring.storage.schema import check_verdicts, eval_checks, llm_logs, run_day_totals, run_search, schema_state
from llm_monitoring_tests.history_data import judge_verdict

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_runs(
    count: int, *, seed: int = 3, undated: int = 0, origin: str = "file", every: timedelta = timedelta(hours=5)
) -> list[RunToStore]:
    """`count` runs `every` apart from START (two share each start time, so ids break ties), the last
    `undated` of them without a start time."""
    rng = random.Random(seed)
    runs = []
    for index in range(count):
        started = START + every * (index // 2)
        log = make_run_log(rng, started, profile=PROFILES[index % len(PROFILES)])
        run = run_from_bytes(json.dumps(log).encode(), f"logs/{origin}_{seed}_{index:03d}.json")
        if index >= count - undated:
            record = dataclasses.replace(run.record, run_started_at=None, run_finished_at=None)
            run = dataclasses.replace(run, record=record)
        runs.append(dataclasses.replace(run, origin=origin))
    return runs


def store(database: Database, runs: list[RunToStore]) -> list[int]:
    result = store_runs(database, runs)
    return [result.inserted[run.content_hash] for run in runs]


def all_runs(database: Database) -> list[dict[str, Any]]:
    with database.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(llm_logs).order_by(llm_logs.c.id))]


def list_order(rows: list[dict[str, Any]]) -> list[int]:
    """The list's order, computed here: newest start first, ties by id, undated runs last."""
    dated = sorted((row for row in rows if row["run_started_at"]), key=lambda row: (row["run_started_at"], row["id"]), reverse=True)
    undated = sorted((row["id"] for row in rows if row["run_started_at"] is None), reverse=True)
    return [row["id"] for row in dated] + undated


def expected_totals(database: Database, keep: Callable[[dict[str, Any]], bool]) -> tuple[int, int, int, int, Decimal, int]:
    rows = [row for row in all_runs(database) if keep(row)]
    priced = [row["total_cost"] for row in rows if row["total_cost"] is not None]
    return (
        len(rows),
        sum(row["total_input_tokens"] or 0 for row in rows),
        sum(row["total_output_tokens"] or 0 for row in rows),
        sum(row["cache_read_tokens"] or 0 for row in rows),
        sum(priced, Decimal(0)),
        len(rows) - len(priced),
    )


def totals_tuple(database: Database, filters: RunFilters) -> tuple[int, int, int, int, Decimal, int]:
    totals = run_totals(database, filters)
    assert totals.exact
    assert totals.total_cost is not None
    return (
        totals.runs,
        totals.input_tokens or 0,
        totals.output_tokens or 0,
        totals.cache_read_tokens or 0,
        totals.total_cost,
        totals.unpriced_runs or 0,
    )


def in_range(start: datetime | None, end: datetime | None) -> Callable[[dict[str, Any]], bool]:
    def keep(row: dict[str, Any]) -> bool:
        started = row["run_started_at"]
        if start is None and end is None:
            return True
        return started is not None and (start is None or started >= start) and (end is None or started < end)

    return keep


def assert_totals_match(database: Database) -> None:
    ranges = [
        (None, None),
        (START + timedelta(hours=3), START + timedelta(days=1, hours=5)),  # partial days at both ends
        (START.replace(hour=0), START.replace(hour=0) + timedelta(days=2)),  # whole days
        (START + timedelta(hours=13), START + timedelta(hours=20)),  # within one day
        (START + timedelta(days=1, hours=2), None),
        (None, START + timedelta(days=1, minutes=30)),
        (START + timedelta(days=3), START),  # an empty range
    ]
    for start, end in ranges:
        for provider in (None, "openai"):
            filters = RunFilters(provider=provider, started_from=start, started_before=end)
            window = in_range(start, end)

            def keep(row: dict[str, Any], window: Callable[[dict[str, Any]], bool] = window, provider: str | None = provider) -> bool:
                return window(row) and (provider is None or row["provider"] == provider)

            assert totals_tuple(database, filters) == expected_totals(database, keep), (start, end, provider)


def assert_documents_of_every_run(database: Database) -> None:
    """On Postgres each run has its search document, and nothing else does."""
    if database.dialect != "postgresql":
        return
    with database.connect() as connection:
        documents = set(connection.scalars(sa.select(run_search.c.log_id)))
        runs = set(connection.scalars(sa.select(llm_logs.c.id)))
    assert documents == runs and runs


def assert_verdicts_current(database: Database) -> None:
    with database.connect() as connection:
        checks = [dict(row._mapping) for row in connection.execute(sa.select(eval_checks))]
        held = {(row.log_id, row.check_name): (row.passed, row.evaluator_version) for row in connection.execute(sa.select(check_verdicts))}
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in checks:
        by_run.setdefault(row["log_id"], []).append(row)
    expected = {
        (row["log_id"], row["check_name"]): (row["passed"], row["evaluator_version"])
        for rows in by_run.values()
        for row in current_checks(rows)
    }
    assert held == expected
    # Each verdict repeats its run's time, provider, model and agent.
    runs = {row["id"]: (row["run_started_at"], row["provider"], row["model"], row["agent_name"]) for row in all_runs(database)}
    with database.connect() as connection:
        for row in connection.execute(sa.select(check_verdicts)):
            assert (row.run_started_at, row.provider, row.model, row.agent_name) == runs[row.log_id]


# ---------------------------------------------------------------------------- pages


def walk_pages(database: Database, filters: RunFilters, oldest: int) -> tuple[list[int], list[int]]:
    """The list's ids read 4 at a time from the newest page on, and from the oldest run back (each
    page ending just before the previous one's first run)."""
    forward, page = [], list_runs(database, filters, limit=4)
    while page:
        forward += [row["id"] for row in page]
        page = list_runs(database, filters, limit=4, after=page_key(page[-1]))
    last = next(row for row in list_runs(database, filters, limit=1000) if row["id"] == oldest)
    backward, page = [oldest], list_runs(database, filters, limit=4, before=page_key(last))
    while page:
        backward = [row["id"] for row in page] + backward
        page = list_runs(database, filters, limit=4, before=page_key(page[0]))
    return forward, backward


def test_pages_from_either_edge_walk_the_whole_list_in_its_order(database: Database) -> None:
    store(database, make_runs(14, undated=3))
    word = "the"
    searched = RunFilters(text=word)
    for filters in (
        RunFilters(),
        RunFilters(check_name="tool_call_search", check_outcome="passed"),
        RunFilters(provider="openai"),
        searched,
    ):
        rows = all_runs(database)
        if filters.provider:
            rows = [row for row in rows if row["provider"] == filters.provider]
        expected = list_order(rows)
        if filters.check_name or filters.text:
            kept = {row["id"] for row in list_runs(database, filters, limit=1000)}
            expected = [log_id for log_id in expected if log_id in kept]
        assert len(expected) >= 5

        assert walk_pages(database, filters, expected[-1]) == (expected, expected)


# ---------------------------------------------------------------------------- totals and verdicts through every write


def judgement(log_id: int, version: str, passed: bool, at: datetime) -> Judgement:
    return judge_verdict(log_id, at, version=version, passed=passed, input_tokens=10, output_tokens=2, cost=None)


def double_the_price(row: PricingRow) -> PriceResult:
    if row.id % 3 == 0:
        return PriceResult(None, None, None, "unpriced: model not found", "test")
    cost = (row.total_cost or Decimal("0.001")) * 2
    return PriceResult(cost / 2, cost / 2, cost, "priced", "test")


def test_totals_and_verdicts_stay_exact_through_every_write(database: Database) -> None:
    ids = store(database, make_runs(16, undated=2))
    store(database, make_runs(6, seed=9, origin="fake"))
    assert_totals_match(database)
    assert_verdicts_current(database)

    assert reprice_window(database, START - timedelta(days=1), START + timedelta(days=5), double_the_price)[1] > 0
    assert_totals_match(database)

    newer = [CheckResult("answer_clear", False, 0.0, "a newer rule says no")]
    replace_checks_in_window(database, START, START + timedelta(days=1), lambda run: newer, "10")
    now = datetime.now(UTC)
    store_judgements(
        database,
        [
            judgement(ids[0], "judge:helpfulness:ffffffffffff", True, now),
            judgement(ids[0], "judge:helpfulness:000000000000", False, now + timedelta(seconds=1)),
        ],
    )
    assert_verdicts_current(database)
    failed = RunFilters(check_name="answer_clear", check_outcome="failed")
    day_one = {row["id"] for row in all_runs(database) if in_range(START, START + timedelta(days=1))(row)}
    assert {row["id"] for row in list_runs(database, failed, limit=1000)} >= day_one

    assert sum(purge_origin(database, "fake").values()) > 0
    assert_totals_match(database)
    deleted = delete_runs_before(database, START + timedelta(hours=12))
    assert deleted["llm_logs"] > 0
    assert_totals_match(database)
    assert_verdicts_current(database)
    assert_documents_of_every_run(database)


def test_a_re_evaluation_rewrites_only_the_verdicts_it_changes(database: Database) -> None:
    store(database, make_runs(12))
    # The physical row: Postgres's xmin, SQLite's rowid, both new when a row is rewritten.
    physical = sa.literal_column("xmin::text" if database.dialect == "postgresql" else "rowid")

    def rows() -> dict[tuple[int, str], Any]:
        with database.connect() as connection:
            return {
                (log_id, check): where
                for log_id, check, where in connection.execute(sa.select(check_verdicts.c.log_id, check_verdicts.c.check_name, physical))
            }

    def verdicts_of(run) -> list[CheckResult]:
        return [CheckResult("answer_clear", run.id % 2 == 0, None, "ok")]

    window = (START - timedelta(days=1), START + timedelta(days=5))
    replace_checks_in_window(database, *window, verdicts_of, "10")
    before = rows()
    replace_checks_in_window(database, *window, verdicts_of, "10")  # the same verdicts again
    assert rows() == before
    assert_verdicts_current(database)

    def flipped(run) -> list[CheckResult]:
        return [CheckResult("answer_clear", run.id % 2 == 1 if run.id % 3 == 0 else run.id % 2 == 0, None, "ok")]

    replace_checks_in_window(database, *window, flipped, "10")
    after = rows()
    moved = {log_id for (log_id, _check), where in after.items() if before[(log_id, _check)] != where}
    assert moved == {log_id for log_id, _check in after if log_id % 3 == 0}
    assert_verdicts_current(database)


def test_an_upgraded_database_fills_its_summaries_from_what_it_holds(database: Database) -> None:
    store(database, make_runs(12, undated=2))
    replace_checks_in_window(database, START, START + timedelta(days=1), lambda run: [CheckResult("answer_clear", None, None, "n/a")], "10")

    def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with database.connect() as connection:
            totals = sorted(tuple(row)[1:] for row in connection.execute(sa.select(run_day_totals).order_by(run_day_totals.c.totals_key)))
            verdicts = sorted(tuple(row) for row in connection.execute(sa.select(check_verdicts)))
        return totals, verdicts

    before = snapshot()
    assert before[0] and before[1]
    # A database of the version before these tables: they are missing and the stored schema is older.
    with database.transaction() as connection:
        connection.execute(sa.delete(schema_state))
        run_day_totals.drop(connection)
        check_verdicts.drop(connection)
        run_search.drop(connection)
    database.ensure_schema()
    assert snapshot() == before
    assert_totals_match(database)
    assert_documents_of_every_run(database)
    word = next(iter(re.findall(r"[a-z]{5,}", all_runs(database)[0]["user_prompt"].lower())))
    assert list_runs(database, RunFilters(text=word))


def test_totals_of_a_scanned_filter_count_up_to_the_cap(database: Database) -> None:
    store(database, make_runs(9))
    without = RunFilters(has_feedback=False)
    capped = run_totals(database, without, cap=4)
    assert (capped.exact, capped.runs, capped.input_tokens, capped.total_cost) == (False, 4, None, None)
    full = run_totals(database, without, cap=None)
    runs, input_tokens, _, _, cost, _ = expected_totals(database, lambda row: True)
    assert full.exact and (full.runs, full.input_tokens, full.total_cost) == (runs, input_tokens, cost)
    assert run_totals(database, without, cap=9).exact


@pytest.mark.parametrize("outcome", ["passed", "failed", "not applicable"])
def test_check_filter_totals_count_the_current_verdicts(database: Database, outcome: str) -> None:
    store(database, make_runs(10))
    filters = RunFilters(check_name="tool_call_search", check_outcome=outcome)
    listed = list_runs(database, filters, limit=1000)
    totals = run_totals(database, filters)
    assert totals.exact and totals.runs == len(listed)
    assert totals.input_tokens == sum(row["total_input_tokens"] or 0 for row in listed)


def test_ratings_filters_count_each_rated_run_once_up_to_the_cap(database: Database) -> None:
    ids = store(database, make_runs(8))
    for log_id, verdicts in zip(ids, ([True, True, False], [True], [False, False], [True], []), strict=False):
        for is_good in verdicts:
            save_feedback(database, log_id, is_good)
    good, rated = RunFilters(feedback_is_good=True), RunFilters(has_feedback=True)
    assert (run_totals(database, good, cap=3).exact, run_totals(database, good, cap=3).runs) == (True, 3)
    assert (run_totals(database, good, cap=2).exact, run_totals(database, good, cap=2).runs) == (False, 2)
    assert run_totals(database, rated).runs == 4 == len(list_runs(database, rated))
    assert run_totals(database, RunFilters(feedback_is_good=False)).runs == 2
    # With another filter beside the ratings, the runs themselves are counted.
    provider = all_runs(database)[0]["provider"]
    both = RunFilters(provider=provider, has_feedback=True)
    assert run_totals(database, both).runs == len(list_runs(database, both))


def test_a_check_filter_with_a_provider_filter_keeps_both(database: Database) -> None:
    store(database, make_runs(20, undated=2))
    since = START + timedelta(hours=4)
    for provider in sorted({row["provider"] for row in all_runs(database)}):
        for outcome in ("passed", "failed", "not applicable"):
            check = RunFilters(check_name="tool_call_search", check_outcome=outcome)
            both = dataclasses.replace(check, provider=provider, started_from=since)
            expected = [
                row["id"]
                for row in list_runs(database, check, limit=1000)
                if row["provider"] == provider and row["run_started_at"] and row["run_started_at"] >= since
            ]
            assert [row["id"] for row in list_runs(database, both, limit=1000)] == expected
            assert run_totals(database, both).runs == len(expected)


@pytest.mark.parametrize("few", [2_000, 2])
def test_a_search_pages_alike_whether_it_has_few_matches_or_many(database: Database, monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """On Postgres a search with at most FEW_MATCHES matches orders them itself; more are read newest first."""
    store(database, make_runs(14, undated=3))
    monkeypatch.setattr("llm_monitoring.storage.review.FEW_MATCHES", few)
    filters = RunFilters(text="the")
    # Which runs match is the search's business (tested with the app); here, their order and pages.
    kept = {row["id"] for row in list_runs(database, filters, limit=1000)}
    expected = [log_id for log_id in list_order(all_runs(database)) if log_id in kept]
    assert len(expected) > 4
    assert walk_pages(database, filters, expected[-1]) == (expected, expected)
