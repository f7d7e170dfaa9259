"""The review app's reads (llm_monitoring/app.py): filters, a page of runs, totals, options, one run.

The list queries never select raw_json and filter, count and sum with the same WHERE clause, so the
app's page and its totals always describe the same set of runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.core.judges import is_judge_version
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.feedback import list_feedback_rows
from llm_monitoring.storage.judgements import is_judge_row
from llm_monitoring.storage.schema import RUN_SEARCH_DOCUMENT, eval_checks, feedback, judge_calls, llm_logs

CHECK_OUTCOMES = ("passed", "failed", "not applicable")


@dataclass(frozen=True)
class RunFilters:
    """What the review app's sidebar narrows the runs to; None means "any"."""

    provider: str | None = None
    model: str | None = None
    agent: str | None = None
    started_from: datetime | None = None  # inclusive
    started_before: datetime | None = None  # exclusive
    check_name: str | None = None
    check_outcome: str | None = None  # one of CHECK_OUTCOMES, with check_name
    has_feedback: bool | None = None
    feedback_is_good: bool | None = None  # runs with at least one good (or bad) feedback
    text: str | None = None  # substring of the prompt or the answer, case-insensitive


@dataclass(frozen=True)
class RunTotals:
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    total_cost: Decimal
    unpriced_runs: int


@dataclass(frozen=True)
class FilterOptions:
    providers: list[str]
    models: list[str]
    agents: list[str]
    check_names: list[str]


def _is_newer(later: sa.FromClause, check: sa.FromClause) -> sa.ColumnElement[bool]:
    """`later` is a newer row than `check` of the same run and check name.

    Rule versions are numbers kept as text: "10" is newer than "9", so the length is compared first.
    An LLM judge's versions are hashes: its newest row is the one written last.
    """
    newer, older = later.c.evaluator_version, check.c.evaluator_version
    by_number = sa.or_(
        sa.func.length(newer) > sa.func.length(older),
        sa.and_(sa.func.length(newer) == sa.func.length(older), newer > older),
    )
    by_time = sa.or_(
        later.c.created_at > check.c.created_at,
        sa.and_(later.c.created_at == check.c.created_at, newer > older),
    )
    judge = is_judge_row(older)
    return sa.or_(sa.and_(judge, by_time), sa.and_(~judge, by_number))


def version_sort_key(version: str) -> tuple[int, str]:
    """Python twin of _is_newer for rule versions: sorts evaluator versions oldest first."""
    return len(version), version


def _recency(row: Mapping[str, Any]) -> tuple[Any, str]:
    """Python twin of _is_newer: rows of one check sort oldest first (a check is either a rule's or a judge's)."""
    version = row["evaluator_version"]
    return (row["created_at"], version) if is_judge_version(version) else version_sort_key(version)


def current_checks(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A run's current verdicts: per check, its newest row (the rule _check_condition applies in SQL), so
    a check an evaluator dropped keeps its last verdict."""
    newest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        held = newest.get(row["check_name"])
        if held is None or _recency(row) > _recency(held):
            newest[row["check_name"]] = row
    return list(newest.values())


def _check_condition(check_name: str, outcome: str) -> sa.ColumnElement[bool]:
    """The run's newest row of this check says `outcome`."""
    check, later = eval_checks.alias("check_row"), eval_checks.alias("later_row")
    if outcome == "passed":
        matches = check.c.passed.is_(True)
    elif outcome == "failed":
        matches = check.c.passed.is_(False)
    elif outcome == "not applicable":
        matches = check.c.passed.is_(None)
    else:
        raise ValueError(f"check outcome must be one of {', '.join(CHECK_OUTCOMES)}, got {outcome!r}")
    superseded = (
        sa.exists().where(later.c.log_id == check.c.log_id, later.c.check_name == check.c.check_name).where(_is_newer(later, check))
    )
    return sa.exists().where(check.c.log_id == llm_logs.c.id, check.c.check_name == check_name, matches).where(~superseded)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _run_conditions(filters: RunFilters, dialect: str) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (llm_logs.c.provider, filters.provider),
        (llm_logs.c.model, filters.model),
        (llm_logs.c.agent_name, filters.agent),
    ):
        if value is not None:
            conditions.append(column == value)
    if filters.started_from is not None:
        conditions.append(llm_logs.c.run_started_at >= filters.started_from)
    if filters.started_before is not None:
        conditions.append(llm_logs.c.run_started_at < filters.started_before)
    if filters.check_name:
        conditions.append(_check_condition(filters.check_name, filters.check_outcome or "failed"))
    if filters.feedback_is_good is not None:
        conditions.append(sa.exists().where(feedback.c.log_id == llm_logs.c.id, feedback.c.is_good.is_(filters.feedback_is_good)))
    elif filters.has_feedback is not None:
        has_any = sa.exists().where(feedback.c.log_id == llm_logs.c.id)
        conditions.append(has_any if filters.has_feedback else ~has_any)
    text = (filters.text or "").strip()
    if text:
        conditions.append(_text_condition(text, dialect))
    return conditions


_SEARCH_WORD = re.compile(r"\w+")
# A search is one condition per word: SQLite refuses a LIKE pattern over 50,000 bytes and an
# expression deeper than 1,000, Postgres a query past its stack depth. These limits keep far below.
SEARCH_TEXT_CHARS = 1_000
SEARCH_WORDS = 50


class InvalidSearch(ValueError):
    """Search text beyond what a search accepts; the message says which limit."""


def _text_condition(text: str, dialect: str) -> sa.ColumnElement[bool]:
    """Every word of `text` appears in the prompt or the answer, case-insensitively.

    On Postgres a word matches the start of a word (an index-backed full-text search: a scan of
    100,000 answers with ILIKE takes seconds); on SQLite it matches anywhere.
    """
    if len(text) > SEARCH_TEXT_CHARS:
        raise InvalidSearch(f"Search text is limited to {SEARCH_TEXT_CHARS:,} characters; this one has {len(text):,}.")
    words = _SEARCH_WORD.findall(text.lower())
    if len(words) > SEARCH_WORDS:
        raise InvalidSearch(f"Search is limited to {SEARCH_WORDS} words; this one has {len(words):,}.")
    if dialect == "postgresql" and words:
        query = " & ".join(f"{word}:*" for word in words)
        return RUN_SEARCH_DOCUMENT.op("@@")(sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), query))
    conditions = []
    for word in words or [text]:
        pattern = f"%{_escape_like(word)}%"
        conditions.append(
            sa.or_(
                llm_logs.c.user_prompt.ilike(pattern, escape="\\"),
                llm_logs.c.assistant_answer.ilike(pattern, escape="\\"),
            )
        )
    return sa.and_(*conditions)


def _newest_first(dialect: str) -> list[sa.ColumnElement[Any]]:
    started = llm_logs.c.run_started_at.desc()
    # Undated runs go last on both databases (SQLite does that by itself and rejects NULLS LAST in indexes).
    return [started.nulls_last() if dialect == "postgresql" else started, llm_logs.c.id.desc()]


RUN_LIST_COLUMNS = (
    llm_logs.c.id,
    llm_logs.c.run_started_at,
    llm_logs.c.provider,
    llm_logs.c.model,
    llm_logs.c.agent_name,
    llm_logs.c.total_input_tokens,
    llm_logs.c.total_output_tokens,
    llm_logs.c.cache_read_tokens,
    llm_logs.c.total_cost,
    llm_logs.c.pricing_status,
    llm_logs.c.duration_seconds,
    llm_logs.c.tool_call_count,
)
PROMPT_PREVIEW_CHARS = 120


def list_runs(database: Database, filters: RunFilters, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """One page of runs, newest first (run time, then id), without raw_json.

    Each row also carries `prompt_preview`, `checks_passed`, `checks_failed`, `checks_not_applicable`
    (newest evaluator version of the run), `feedback_good` and `feedback_bad`.
    """
    with database.connect() as connection:
        query = (
            sa.select(*RUN_LIST_COLUMNS, sa.func.substr(llm_logs.c.user_prompt, 1, PROMPT_PREVIEW_CHARS).label("prompt_preview"))
            .where(*_run_conditions(filters, connection.dialect.name))
            .order_by(*_newest_first(connection.dialect.name))
            .limit(limit)
            .offset(offset)
        )
        rows = [dict(row._mapping) for row in connection.execute(query)]
        ids = [row["id"] for row in rows]
        if not ids:
            return rows
        checks: dict[int, list[dict[str, Any]]] = {}
        for row in connection.execute(
            sa.select(
                eval_checks.c.log_id,
                eval_checks.c.check_name,
                eval_checks.c.evaluator_version,
                eval_checks.c.passed,
                eval_checks.c.created_at,
            ).where(eval_checks.c.log_id.in_(ids))
        ).mappings():
            checks.setdefault(row["log_id"], []).append(row)
        votes: dict[tuple[int, bool], int] = {
            (log_id, is_good): count
            for log_id, is_good, count in connection.execute(
                sa.select(feedback.c.log_id, feedback.c.is_good, sa.func.count())
                .where(feedback.c.log_id.in_(ids))
                .group_by(feedback.c.log_id, feedback.c.is_good)
            )
        }
    for row in rows:
        outcomes = [check["passed"] for check in current_checks(checks.get(row["id"], []))]
        row["checks_passed"] = sum(1 for passed in outcomes if passed is True)
        row["checks_failed"] = sum(1 for passed in outcomes if passed is False)
        row["checks_not_applicable"] = sum(1 for passed in outcomes if passed is None)
        row["feedback_good"] = votes.get((row["id"], True), 0)
        row["feedback_bad"] = votes.get((row["id"], False), 0)
    return rows


def run_totals(database: Database, filters: RunFilters) -> RunTotals:
    """Runs, tokens and cost (USD) of every run the filters select, not only one page."""
    with database.connect() as connection:
        conditions = _run_conditions(filters, connection.dialect.name)
        postgres = connection.dialect.name == "postgresql"
        sums = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(llm_logs.c.total_input_tokens), 0),
                sa.func.coalesce(sa.func.sum(llm_logs.c.total_output_tokens), 0),
                sa.func.coalesce(sa.func.sum(llm_logs.c.cache_read_tokens), 0),
                sa.func.count(llm_logs.c.total_cost),
                sa.func.sum(llm_logs.c.total_cost) if postgres else sa.null(),
            ).where(*conditions)
        ).one()
        if postgres:
            cost = sums[5] or Decimal(0)
        else:
            # SQLite keeps costs as decimal text and its SUM would round through REAL: add them exactly here.
            cost = sum(
                (
                    Decimal(value)
                    for value in connection.scalars(
                        sa.select(sa.cast(llm_logs.c.total_cost, sa.String)).where(*conditions, llm_logs.c.total_cost.is_not(None))
                    )
                ),
                Decimal(0),
            )
    runs, input_tokens, output_tokens, cache_read, priced = sums[:5]
    return RunTotals(
        runs=runs,
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cache_read_tokens=int(cache_read),
        total_cost=cost,
        unpriced_runs=runs - priced,
    )


def _distinct_values(connection: Connection, column: sa.Column[Any]) -> list[str]:
    """Distinct non-NULL values of an indexed column by hopping through its index (a loose index scan).

    A plain DISTINCT reads every row; this reads one index entry per distinct value, so the
    sidebar's options stay instant on 100,000 runs.
    """
    preparer = connection.dialect.identifier_preparer
    table, name = preparer.quote(column.table.name), preparer.quote(column.name)
    statement = sa.text(
        f"WITH RECURSIVE distinct_values(value) AS ("
        f" SELECT (SELECT {name} FROM {table} WHERE {name} IS NOT NULL ORDER BY {name} LIMIT 1)"
        f" UNION ALL"
        f" SELECT (SELECT {name} FROM {table} WHERE {name} > distinct_values.value ORDER BY {name} LIMIT 1)"
        f" FROM distinct_values WHERE distinct_values.value IS NOT NULL"
        f") SELECT value FROM distinct_values WHERE value IS NOT NULL"
    )
    return list(connection.scalars(statement))


def filter_options(database: Database) -> FilterOptions:
    with database.connect() as connection:
        return FilterOptions(
            providers=_distinct_values(connection, llm_logs.c.provider),
            models=_distinct_values(connection, llm_logs.c.model),
            agents=_distinct_values(connection, llm_logs.c.agent_name),
            check_names=_distinct_values(connection, eval_checks.c.check_name),
        )


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
