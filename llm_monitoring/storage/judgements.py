"""LLM judges' rows: the runs a judge version still has to judge, its verdicts (eval_checks) with their
calls (judge_calls) stored together, and the pairs of verdicts and reviewer ratings behind agreement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from llm_monitoring.core.judges import JUDGE_VERSION_PREFIX
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.rollups import refresh_verdicts
from llm_monitoring.storage.schema import eval_checks, feedback, judge_calls, llm_logs
from llm_monitoring.storage.windows import in_window

IdRange = tuple[int, int]  # inclusive [first, last] llm_logs ids


@dataclass(frozen=True)
class RunForJudging:
    """What a judge reads of a stored run."""

    log_id: int
    content_hash: str
    run_started_at: datetime | None
    user_prompt: str | None
    instructions: str | None
    assistant_answer: str | None
    reference_answer: str | None  # the latest one a reviewer gave, if any
    raw_json: str | None  # read only when the rubric quotes the tool calls


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on one run and the call that gave it, to store together."""

    log_id: int
    check_name: str
    evaluator_version: str
    passed: bool
    score: float
    reason: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    requests: int
    cost: Decimal | None
    pricing_status: str
    price_data_version: str
    latency_seconds: float
    created_at: datetime


def is_judge_row(version: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The rows LLM judges wrote (their versions start with "judge:"), in SQL."""
    return version.startswith(JUDGE_VERSION_PREFIX, autoescape=True)


def _run_scope(start: datetime | None, end: datetime | None, id_ranges: Sequence[IdRange]) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if start is not None and end is not None:
        conditions.append(in_window(llm_logs.c.run_started_at, start, end))
    if id_ranges:
        conditions.append(sa.or_(*(llm_logs.c.id.between(first, last) for first, last in id_ranges)))
    return conditions


def _judged_by(version: str) -> sa.Exists:
    return sa.exists().where(eval_checks.c.log_id == llm_logs.c.id, eval_checks.c.evaluator_version == version)


def count_runs(
    database: Database, version: str, start: datetime | None, end: datetime | None, id_ranges: Sequence[IdRange] = ()
) -> tuple[int, int]:
    """(runs in scope, of which already judged by `version`)."""
    scope = _run_scope(start, end, id_ranges)
    with database.connect() as connection:
        runs, judged = connection.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((_judged_by(version), 1), else_=0))).select_from(llm_logs).where(*scope)
        ).one()
    return runs, judged or 0


def runs_to_judge(
    database: Database,
    version: str,
    start: datetime | None,
    end: datetime | None,
    id_ranges: Sequence[IdRange] = (),
    *,
    with_raw_json: bool = False,
    chunk_size: int = 200,
) -> Iterator[list[RunForJudging]]:
    """Runs in scope without a verdict of `version`, a chunk at a time by id.

    Each chunk is read on its own connection, so no read transaction stays open while the judge's
    calls run; runs judged meanwhile (by another job) are left out of the chunks not yet read.
    """
    columns = [
        llm_logs.c.id,
        llm_logs.c.content_hash,
        llm_logs.c.run_started_at,
        llm_logs.c.user_prompt,
        llm_logs.c.instructions,
        llm_logs.c.assistant_answer,
        llm_logs.c.raw_json if with_raw_json else sa.null().label("raw_json"),
    ]
    scope = _run_scope(start, end, id_ranges)
    last_id = 0
    while True:
        with database.connect() as connection:
            rows = connection.execute(
                sa.select(*columns).where(*scope, llm_logs.c.id > last_id, ~_judged_by(version)).order_by(llm_logs.c.id).limit(chunk_size)
            ).all()
            if not rows:
                return
            references = _latest_reference_answers(connection, [row.id for row in rows])
        last_id = rows[-1].id
        yield [
            RunForJudging(
                row.id,
                row.content_hash,
                row.run_started_at,
                row.user_prompt,
                row.instructions,
                row.assistant_answer,
                references.get(row.id),
                row.raw_json,
            )
            for row in rows
        ]


def _latest_reference_answers(connection: Connection, log_ids: list[int]) -> dict[int, str]:
    rows = connection.execute(
        sa.select(feedback.c.log_id, feedback.c.reference_answer)
        .where(feedback.c.log_id.in_(log_ids), feedback.c.reference_answer.is_not(None), feedback.c.reference_answer != "")
        .order_by(sa.func.coalesce(feedback.c.updated_at, feedback.c.created_at), feedback.c.id)
    )
    return {log_id: text for log_id, text in rows}  # the latest wins


def _insert_ignoring_duplicates(connection: Connection, table: sa.Table) -> Any:
    # Another job may have judged the same run with the same version meanwhile: its row stands.
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def store_judgements(database: Database, judgements: Sequence[Judgement]) -> int:
    """Store verdicts and their calls in one transaction; returns how many verdicts were new."""
    if not judgements:
        return 0
    checks = [
        {
            "log_id": j.log_id,
            "check_name": j.check_name,
            "passed": j.passed,
            "score": j.score,
            "details": j.reason,
            "evaluator_version": j.evaluator_version,
            "created_at": j.created_at,
        }
        for j in judgements
    ]
    calls = [
        {
            "log_id": j.log_id,
            "check_name": j.check_name,
            "evaluator_version": j.evaluator_version,
            "model": j.model,
            "input_tokens": j.input_tokens,
            "output_tokens": j.output_tokens,
            "cache_read_tokens": j.cache_read_tokens,
            "requests": j.requests,
            "cost": j.cost,
            "pricing_status": j.pricing_status,
            "price_data_version": j.price_data_version,
            "latency_seconds": j.latency_seconds,
            "created_at": j.created_at,
        }
        for j in judgements
    ]
    ids = [j.log_id for j in judgements]
    versions = {j.evaluator_version for j in judgements}
    with database.transaction() as connection:
        # A run deleted (purged) while it was being judged has nowhere to keep its verdict.
        existing = set(connection.scalars(sa.select(llm_logs.c.id).where(llm_logs.c.id.in_(ids))))
        checks = [row for row in checks if row["log_id"] in existing]
        calls = [row for row in calls if row["log_id"] in existing]
        if not checks:
            return 0
        before = _count_verdicts(connection, ids, versions)
        connection.execute(_insert_ignoring_duplicates(connection, eval_checks), checks)
        connection.execute(_insert_ignoring_duplicates(connection, judge_calls), calls)
        refresh_verdicts(connection, {row["log_id"] for row in checks})
        return _count_verdicts(connection, ids, versions) - before


def _count_verdicts(connection: Connection, log_ids: list[int], versions: set[str]) -> int:
    return (
        connection.scalar(
            sa.select(sa.func.count()).where(eval_checks.c.log_id.in_(log_ids), eval_checks.c.evaluator_version.in_(sorted(versions)))
        )
        or 0
    )


def verdict_reviewer_pairs(database: Database, versions: Sequence[str] | None = None) -> list[tuple[str, str, bool, bool]]:
    """(check_name, evaluator_version, judge passed, reviewer good): one pair per reviewer rating of a judged
    run, for the given judge versions (default: every judge version)."""
    query = (
        sa.select(eval_checks.c.check_name, eval_checks.c.evaluator_version, eval_checks.c.passed, feedback.c.is_good)
        .select_from(eval_checks.join(feedback, feedback.c.log_id == eval_checks.c.log_id))
        .where(is_judge_row(eval_checks.c.evaluator_version), eval_checks.c.passed.is_not(None))
    )
    if versions is not None:
        query = query.where(eval_checks.c.evaluator_version.in_(list(versions)))
    with database.connect() as connection:
        return [(name, version, bool(passed), bool(good)) for name, version, passed, good in connection.execute(query)]
