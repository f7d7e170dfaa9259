"""The daily tables: the run rows their summaries are built from, and their per-window rewrites."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import DAILY_TABLES, eval_checks, feedback, judge_calls, llm_logs
from llm_monitoring.storage.windows import in_window, serialize_rewrites

USAGE_COLUMNS = (
    "run_started_at",
    "provider",
    "model",
    "agent_name",
    "total_input_tokens",
    "total_output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "input_cost",
    "output_cost",
    "total_cost",
    "duration_seconds",
)


def usage_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Runs started in [start, end), with the columns of USAGE_COLUMNS."""
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(*(llm_logs.c[name] for name in USAGE_COLUMNS)).where(in_window(llm_logs.c.run_started_at, start, end))
            )
        ]


EVAL_COLUMNS = (
    "run_started_at",
    "check_name",
    "evaluator_version",
    "passed",
    "judge_input_tokens",
    "judge_output_tokens",
    "judge_cost",
    "judge_called",
)


def eval_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Check rows (every evaluator version) of runs started in [start, end), with EVAL_COLUMNS; an LLM
    judge's row carries its call's tokens and cost (judge_calls), a rule check's NULLs."""
    call = sa.and_(judge_calls.c.log_id == eval_checks.c.log_id, judge_calls.c.evaluator_version == eval_checks.c.evaluator_version)
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(
                    llm_logs.c.run_started_at,
                    eval_checks.c.check_name,
                    eval_checks.c.evaluator_version,
                    eval_checks.c.passed,
                    judge_calls.c.input_tokens,
                    judge_calls.c.output_tokens,
                    judge_calls.c.cost,
                    judge_calls.c.id.is_not(None),
                )
                .select_from(eval_checks.join(llm_logs, eval_checks.c.log_id == llm_logs.c.id).outerjoin(judge_calls, call))
                .where(in_window(llm_logs.c.run_started_at, start, end))
            )
        ]


FEEDBACK_COLUMNS = ("run_started_at", "is_good")


def feedback_rows(database: Database, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """Feedback on runs started in [start, end), with FEEDBACK_COLUMNS."""
    with database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(llm_logs.c.run_started_at, feedback.c.is_good)
                .select_from(feedback.join(llm_logs, feedback.c.log_id == llm_logs.c.id))
                .where(in_window(llm_logs.c.run_started_at, start, end))
            )
        ]


def replace_daily_rows(
    database: Database, table_name: str, first_day: date, end_day: date, build: Callable[[], Sequence[dict[str, Any]]]
) -> tuple[int, list[dict[str, Any]]]:
    """Replace the rows of days [first_day, end_day) of a daily table with those `build` returns; returns
    how many rows were deleted, and the new rows.

    `build` reads the runs only once this table's rewrite lock is held: of two overlapping rebuilds
    (two ingest runs storing runs of the same day), the later one then sees every run the earlier
    one saw, so a stale rebuild never overwrites a fresher one.
    """
    table = DAILY_TABLES[table_name]
    with database.transaction() as connection:
        serialize_rewrites(connection, table_name)
        rows = list(build())
        deleted = connection.execute(sa.delete(table).where(table.c.day >= first_day, table.c.day < end_day)).rowcount
        if rows:
            connection.execute(sa.insert(table), rows)
    return deleted, rows


def daily_rows(database: Database, table_name: str, first_day: date, end_day: date) -> list[dict[str, Any]]:
    table = DAILY_TABLES[table_name]
    with database.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(table).where(table.c.day >= first_day, table.c.day < end_day).order_by(table.c.day, table.c.id)
            )
        ]


def latest_daily_day(database: Database, table_name: str) -> date | None:
    table = DAILY_TABLES[table_name]
    with database.connect() as connection:
        return connection.scalar(sa.select(sa.func.max(table.c.day)))
