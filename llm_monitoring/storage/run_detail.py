"""One run for the review app: its row, raw log, rule checks, feedback and judges' verdicts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.feedback import list_feedback_rows
from llm_monitoring.storage.judgements import is_judge_row
from llm_monitoring.storage.rollups import version_sort_key
from llm_monitoring.storage.schema import eval_checks, judge_calls, llm_logs


def run_detail(database: Database, log_id: int) -> dict[str, Any] | None:
    """A run's row without raw_json (see stored_raw_json; Database.get_log has both), with
    `has_raw_log`: False once retention dropped it."""
    with database.connect() as connection:
        row = connection.execute(
            sa.select(
                *(column for column in llm_logs.c if column is not llm_logs.c.raw_json),
                llm_logs.c.raw_json.is_not(None).label("has_raw_log"),
            ).where(llm_logs.c.id == log_id)
        ).first()
        return dict(row._mapping) if row else None


def stored_raw_json(database: Database, log_id: int) -> str | None:
    with database.connect() as connection:
        return connection.scalar(sa.select(llm_logs.c.raw_json).where(llm_logs.c.id == log_id))


def run_checks(database: Database, log_id: int) -> list[dict[str, Any]]:
    """Every rule check row of a run, newest evaluator version first, then by check name (judges: run_judgements)."""
    with database.connect() as connection:
        rows = [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(eval_checks).where(eval_checks.c.log_id == log_id, ~is_judge_row(eval_checks.c.evaluator_version))
            )
        ]
    rows.sort(key=lambda row: row["check_name"])
    rows.sort(key=lambda row: version_sort_key(row["evaluator_version"]), reverse=True)
    return rows


def run_feedback(database: Database, log_id: int) -> list[dict[str, Any]]:
    """The feedback history of a run, newest first."""
    return list_feedback_rows(database, log_id=log_id, limit=None)


def run_judgements(database: Database, log_id: int) -> list[dict[str, Any]]:
    """A run's judge verdicts with their calls' model, tokens and cost, newest first."""
    query = (
        sa.select(
            eval_checks.c.check_name,
            eval_checks.c.evaluator_version,
            eval_checks.c.passed,
            eval_checks.c.score,
            eval_checks.c.details,
            eval_checks.c.created_at,
            judge_calls.c.model,
            judge_calls.c.input_tokens,
            judge_calls.c.output_tokens,
            judge_calls.c.cost,
        )
        .select_from(
            eval_checks.outerjoin(
                judge_calls,
                sa.and_(judge_calls.c.log_id == eval_checks.c.log_id, judge_calls.c.evaluator_version == eval_checks.c.evaluator_version),
            )
        )
        .where(eval_checks.c.log_id == log_id, is_judge_row(eval_checks.c.evaluator_version))
        .order_by(eval_checks.c.created_at.desc(), eval_checks.c.check_name)
    )
    with database.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
