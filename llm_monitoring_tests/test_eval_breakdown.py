"""daily_eval_breakdown: daily_eval_summary by the runs' provider, model and agent, rebuilt with it and
filled on upgrade, on SQLite and Postgres."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llm_monitoring.config import RetentionSettings
from llm_monitoring.core.eval_aggregates import SUMMARY_KEYS
from llm_monitoring.fake_data import FakeRunLog, build_dataset, store_dataset, to_run_to_store
from llm_monitoring.recompute import rebuild_run_days
from llm_monitoring.retention import apply_retention
from llm_monitoring.samples import make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import Judgement, store_judgements
from llm_monitoring.storage.schema import daily_eval_breakdown, daily_eval_summary, eval_checks, judge_calls, llm_logs, schema_state
from llm_monitoring_tests.history_data import judge_verdict

END = datetime(2026, 3, 6, 14, 30, tzinfo=UTC)
DAYS = [(END - timedelta(days=offset)).date() for offset in range(6)]
JUDGE = "judge:helpfulness:00112233aabb"


def _judgement(log_id: int) -> Judgement:
    return judge_verdict(
        log_id,
        END,
        version=JUDGE,
        passed=None if log_id % 11 == 0 else log_id % 3 != 0,
        input_tokens=300 + log_id,
        output_tokens=None if log_id % 7 == 0 else 30,
        # Costs no binary float holds exactly: a float sum anywhere would show.
        cost=None if log_id % 5 == 0 else Decimal("0.000000123456") * (log_id % 4 + 1),
    )


def fill(database: Database) -> None:
    store_dataset(database, build_dataset(160, 24 * (len(DAYS) - 1), seed=5, end=END, feedback_rate=0))
    # Runs without an agent name, and an undated one (its checks belong to no day).
    rng = random.Random(2)
    odd = []
    for index in range(3):
        run_log = make_run_log(rng, END - timedelta(hours=3 + 20 * index))
        del run_log["agent_name"]
        odd.append(FakeRunLog(f"no_agent_{index}.json", json.dumps(run_log).encode(), END))
    store_runs(database, [to_run_to_store(run_log) for run_log in odd])
    with database.transaction() as connection:
        connection.execute(
            sa.update(llm_logs).where(llm_logs.c.id == sa.select(sa.func.max(llm_logs.c.id)).scalar_subquery()).values(run_started_at=None)
        )
        log_ids = connection.execute(sa.select(llm_logs.c.id).order_by(llm_logs.c.id)).scalars().all()
    store_judgements(database, [_judgement(log_id) for log_id in log_ids[::2]])
    rebuild_run_days(database, DAYS)


def rows(database: Database, table: sa.Table) -> list[dict[str, Any]]:
    with database.connect() as connection:
        found = [dict(row._mapping) for row in connection.execute(sa.select(table))]
    for row in found:
        del row["id"], row["computed_at"]
    return sorted(found, key=lambda row: [(value is None, str(value)) for value in row.values()])


def expected_breakdown(database: Database) -> list[dict[str, Any]]:
    """The breakdown counted run by run, in Python, from the stored rows."""
    call = sa.and_(judge_calls.c.log_id == eval_checks.c.log_id, judge_calls.c.evaluator_version == eval_checks.c.evaluator_version)
    with database.connect() as connection:
        checks = connection.execute(
            sa.select(
                llm_logs.c.run_started_at,
                llm_logs.c.provider,
                llm_logs.c.model,
                llm_logs.c.agent_name,
                eval_checks.c.check_name,
                eval_checks.c.evaluator_version,
                eval_checks.c.passed,
                judge_calls.c.id,
                judge_calls.c.input_tokens,
                judge_calls.c.output_tokens,
                judge_calls.c.cost,
            )
            .select_from(eval_checks.join(llm_logs, llm_logs.c.id == eval_checks.c.log_id).outerjoin(judge_calls, call))
            .where(llm_logs.c.run_started_at.is_not(None))
        ).all()
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for started, provider, model, agent, check, version, passed, call_id, tokens_in, tokens_out, cost in checks:
        key = (started.astimezone(UTC).date(), provider, model, agent, check, version)
        judge = version.startswith("judge:")
        row = found.setdefault(key, {
            "day": key[0], "provider": provider, "model": model, "agent_name": agent, "check_name": check, "evaluator_version": version,
            "runs": 0, "applicable": 0, "passed": 0,
            "judge_input_tokens": 0 if judge else None, "judge_output_tokens": 0 if judge else None,
            "judge_cost": Decimal(0) if judge else None, "judge_unpriced_calls": 0 if judge else None,
        })  # fmt: skip
        row["runs"] += 1
        row["applicable"] += passed is not None
        row["passed"] += bool(passed)
        if judge and call_id is not None:
            row["judge_input_tokens"] += tokens_in or 0
            row["judge_output_tokens"] += tokens_out or 0
            row["judge_unpriced_calls"] += cost is None
            row["judge_cost"] += cost or 0
    return sorted(found.values(), key=lambda row: [(value is None, str(value)) for value in row.values()])


def test_the_breakdown_counts_every_check_by_run_group_and_adds_up_to_the_summary(database: Database) -> None:
    fill(database)
    breakdown = rows(database, daily_eval_breakdown)
    assert breakdown == expected_breakdown(database)
    assert {row["agent_name"] for row in breakdown} >= {None} and len({row["provider"] for row in breakdown}) > 1
    assert any(row["judge_unpriced_calls"] for row in breakdown) and any(row["judge_cost"] for row in breakdown)

    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in breakdown:
        total = totals.setdefault(tuple(row[name] for name in SUMMARY_KEYS), dict.fromkeys(("runs", "applicable", "passed", "cost"), 0))
        for name in ("runs", "applicable", "passed"):
            total[name] += row[name]
        total["cost"] += row["judge_cost"] or 0
    summary = {tuple(row[name] for name in SUMMARY_KEYS): row for row in rows(database, daily_eval_summary)}
    assert summary.keys() == totals.keys()
    for key, row in summary.items():
        assert (row["runs"], row["applicable"], row["passed"], row["judge_cost"] or 0) == tuple(totals[key].values()), key
        assert row["pass_rate"] == (round(row["passed"] / row["applicable"], 6) if row["applicable"] else None)


def test_an_upgrade_fills_the_breakdown_of_the_days_retention_has_not_reached(database: Database) -> None:
    fill(database)
    # Retention deletes the runs of the two oldest days (and a part of the third).
    cutoff = datetime.combine(DAYS[-3], datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)
    apply_retention(database, RetentionSettings(days=2, raw_days=None), now=cutoff + timedelta(days=2))
    built = rows(database, daily_eval_breakdown)
    summary = rows(database, daily_eval_summary)
    # A database of the version before the breakdown: the table is missing and the stored schema is
    # older; its summary missed a day (runs stored outside the ingest were never aggregated) and kept
    # one whose runs are gone (purged outside the ingest).
    with database.transaction() as connection:
        connection.execute(sa.delete(schema_state))
        daily_eval_breakdown.drop(connection)
        connection.execute(sa.delete(daily_eval_summary).where(daily_eval_summary.c.day == DAYS[1]))
        stale = {**summary[-1], "day": DAYS[0] + timedelta(days=1), "computed_at": END}
        connection.execute(sa.insert(daily_eval_summary).values(stale))
    database.ensure_schema()
    filled = rows(database, daily_eval_breakdown)
    first_kept: date = DAYS[-3] + timedelta(days=1)
    assert filled == [row for row in built if row["day"] >= first_kept]
    assert filled and min(row["day"] for row in filled) == first_kept
    # The summary of those days is the breakdown's again, the missed day included; the days before
    # the cutoff keep the totals of their deleted runs.
    assert rows(database, daily_eval_summary) == summary
