"""The review app's list (llm_monitoring/app.py): filters, a page of runs, the sidebar's options
(totals: review_totals.py; one run: run_detail.py).

Their cost follows what a page shows, not the length of the history: pages are index range scans from
a PageKey (never OFFSET), a check filter reads the check's current verdicts in the list's order
(check_verdicts), and totals add up run_day_totals, or count at most TOTALS_CAP runs where only a
scan could total them. The list queries never select raw_json.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import (
    BigId,
    UTCDateTime,
    check_verdicts,
    feedback,
    llm_logs,
    run_search,
)

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
class FilterOptions:
    providers: list[str]
    models: list[str]
    agents: list[str]
    check_names: list[str]


@dataclass(frozen=True)
class PageKey:
    """A run's place in the list's order (newest first by start time, undated runs last, then by id):
    a page starts after or ends before one, so a deep page costs what the first one does."""

    started_at: datetime | None
    id: int


def page_key(row: Mapping[str, Any]) -> PageKey:
    return PageKey(row["run_started_at"], row["id"])


def _outcome_condition(column: sa.ColumnElement[Any], outcome: str) -> sa.ColumnElement[bool]:
    if outcome == "passed":
        return column.is_(True)
    if outcome == "failed":
        return column.is_(False)
    if outcome == "not applicable":
        return column.is_(None)
    raise ValueError(f"check outcome must be one of {', '.join(CHECK_OUTCOMES)}, got {outcome!r}")


@dataclass
class RunSource:
    """What a list or count reads: llm_logs, or the check's current verdicts joined to it, whose index
    holds the runs of one check and outcome in the list's order."""

    from_clause: sa.FromClause
    started: sa.ColumnElement[Any]
    id: sa.ColumnElement[Any]
    conditions: list[sa.ColumnElement[bool]]
    # Where the capped count reads: the runs' own source, or for a check or ratings filter alone, the
    # verdicts' or the ratings' index, never the runs.
    count_from: sa.FromClause
    count_id: sa.ColumnElement[Any]
    count_conditions: list[sa.ColumnElement[bool]]


def run_source(filters: RunFilters, dialect: str) -> RunSource:
    """The runs the filters select, read in the list's order from the narrowest place that has it: a
    check's current verdicts, else (Postgres) the search documents of a text search, else the runs."""
    from_clause: sa.FromClause = llm_logs
    started, run_id = llm_logs.c.run_started_at, llm_logs.c.id
    if _searches_documents(filters, dialect):
        from_clause = run_search.join(from_clause, llm_logs.c.id == run_search.c.log_id)
        started, run_id = run_search.c.run_started_at, run_search.c.log_id
    if not filters.check_name:
        conditions = run_conditions(filters, dialect)
        source = RunSource(from_clause, started, run_id, conditions, from_clause, run_id, conditions)
        rated = _rated_runs_only(filters)
        if rated is not None:
            source.count_from, source.count_id, source.count_conditions = rated, rated.c.log_id, []
        return source
    # The verdict rows repeat the run's time, provider, model and agent: those filters apply in the
    # verdicts' index, and only ratings and text need the runs.
    verdict = check_verdicts
    on_verdicts = [
        verdict.c.check_name == filters.check_name,
        _outcome_condition(verdict.c.passed, filters.check_outcome or "failed"),
        *run_conditions(filters, dialect, verdict),
    ]
    on_runs = run_conditions(
        RunFilters(has_feedback=filters.has_feedback, feedback_is_good=filters.feedback_is_good, text=filters.text), dialect
    )
    joined = verdict.join(from_clause, llm_logs.c.id == verdict.c.log_id)
    both = on_verdicts + on_runs
    source = RunSource(joined, verdict.c.run_started_at, verdict.c.log_id, both, joined, verdict.c.log_id, both)
    if not on_runs:
        source.count_from, source.count_conditions = verdict, on_verdicts
    return source


def _rated_runs_only(filters: RunFilters) -> sa.Subquery | None:
    """For a filter on ratings alone, the rated runs from feedback's own indexes (one row per run), so
    counting them never walks the runs; None for any other filter."""
    if filters != RunFilters(has_feedback=filters.has_feedback, feedback_is_good=filters.feedback_is_good):
        return None
    if filters.feedback_is_good is not None:
        rated = sa.select(feedback.c.log_id).where(feedback.c.is_good.is_(filters.feedback_is_good)).distinct()
    elif filters.has_feedback:
        rated = sa.select(feedback.c.log_id).distinct()
    else:
        return None  # runs without a rating: most runs, found at once by the runs themselves
    return rated.subquery("rated")


def run_conditions(filters: RunFilters, dialect: str, runs: sa.Table = llm_logs) -> list[sa.ColumnElement[bool]]:
    """The filters' conditions, the check filter aside (see run_source): on llm_logs and its children, or
    for the provider, model, agent and time filters alone, on `runs` (check_verdicts, which repeats
    those columns of each run)."""
    conditions: list[sa.ColumnElement[bool]] = []
    for name, value in (("provider", filters.provider), ("model", filters.model), ("agent_name", filters.agent)):
        if value is not None:
            conditions.append(runs.c[name] == value)
    if filters.started_from is not None:
        conditions.append(runs.c.run_started_at >= filters.started_from)
    if filters.started_before is not None:
        conditions.append(runs.c.run_started_at < filters.started_before)
    if runs is not llm_logs:
        return conditions
    if filters.feedback_is_good is not None:
        conditions.append(sa.exists().where(feedback.c.log_id == llm_logs.c.id, feedback.c.is_good.is_(filters.feedback_is_good)))
    elif filters.has_feedback is not None:
        has_any = sa.exists().where(feedback.c.log_id == llm_logs.c.id)
        conditions.append(has_any if filters.has_feedback else ~has_any)
    if _search_words(filters):
        conditions.append(_text_condition(filters, dialect))
    return conditions


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_SEARCH_WORD = re.compile(r"\w+")
# A search is one condition per word: SQLite refuses a LIKE pattern over 50,000 bytes and an
# expression deeper than 1,000, Postgres a query past its stack depth. These limits keep far below.
SEARCH_TEXT_CHARS = 1_000
SEARCH_WORDS = 50


class InvalidSearch(ValueError):
    """Search text beyond what a search accepts; the message says which limit."""


def _search_words(filters: RunFilters) -> list[str]:
    """The words of the search text, checked against the limits; [] without a search."""
    text = (filters.text or "").strip()
    if not text:
        return []
    if len(text) > SEARCH_TEXT_CHARS:
        raise InvalidSearch(f"Search text is limited to {SEARCH_TEXT_CHARS:,} characters; this one has {len(text):,}.")
    words = _SEARCH_WORD.findall(text.lower())
    if len(words) > SEARCH_WORDS:
        raise InvalidSearch(f"Search is limited to {SEARCH_WORDS} words; this one has {len(words):,}.")
    return words or [text]


def _searches_documents(filters: RunFilters, dialect: str) -> bool:
    """Postgres searches words in run_search; text without a word ("%") is matched as text."""
    words = _search_words(filters)
    return dialect == "postgresql" and bool(words) and _SEARCH_WORD.fullmatch(words[0]) is not None


def _text_condition(filters: RunFilters, dialect: str) -> sa.ColumnElement[bool]:
    """Every word of the search appears in the prompt or the answer, case-insensitively.

    On Postgres a word matches the start of a word, in run_search's documents (joined by run_source); on
    SQLite it matches anywhere in the text.
    """
    words = _search_words(filters)
    if _searches_documents(filters, dialect):
        query = " & ".join(f"{word}:*" for word in words)
        return run_search.c.document.op("@@")(sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), query))
    conditions = []
    for word in words:
        pattern = f"%{_escape_like(word)}%"
        conditions.append(
            sa.or_(
                llm_logs.c.user_prompt.ilike(pattern, escape="\\"),
                llm_logs.c.assistant_answer.ilike(pattern, escape="\\"),
            )
        )
    return sa.and_(*conditions)


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


def list_runs(
    database: Database,
    filters: RunFilters,
    *,
    limit: int = 100,
    after: PageKey | None = None,
    before: PageKey | None = None,
) -> list[dict[str, Any]]:
    """One page of runs in the list's order (newest first, undated runs last), without raw_json: the
    first page, the page after `after` or the page before `before`.

    Each row also carries `prompt_preview`, `checks_passed`, `checks_failed`, `checks_not_applicable`
    (current verdicts), `feedback_good` and `feedback_bad`.
    """
    with database.connect() as connection:
        source = run_source(filters, connection.dialect.name)
        rows = None
        if _searches_documents(filters, connection.dialect.name):
            rows = _page_of_few_matches(connection, source, limit, after, before)
        if rows is None:
            rows = _page(connection, source, limit, after, before)
        _add_check_and_feedback_counts(connection, rows)
    return rows


# A search matching at most this many runs is ordered from all of its matches, found through the
# documents' GIN index: walking the runs newest first would read 2,000 runs per match of a word in one
# run in 2,000 (and Postgres, whose estimate for a rare prefix is high, would choose that walk).
FEW_MATCHES = 2_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _list_position(started: datetime | None, run_id: int) -> tuple[int, int, int]:
    """A run's sort key in the list's order: newest first by start time (to the microsecond), then by
    id, undated runs last."""
    if started is None:
        return 1, 0, -run_id
    return 0, -((started - _EPOCH) // timedelta(microseconds=1)), -run_id


def _page_of_few_matches(
    connection: Connection, source: RunSource, limit: int, after: PageKey | None, before: PageKey | None
) -> list[dict[str, Any]] | None:
    """The page from every match, sorted here, when there are at most FEW_MATCHES; None otherwise."""
    matches = connection.execute(
        sa.select(source.started, source.id).select_from(source.from_clause).where(*source.conditions).limit(FEW_MATCHES + 1)
    ).all()
    if len(matches) > FEW_MATCHES:
        return None
    positions = sorted(_list_position(started, run_id) for started, run_id in matches)
    if after is not None:
        start = bisect.bisect_right(positions, _list_position(after.started_at, after.id))
        page = positions[start : start + limit]
    elif before is not None:
        end = bisect.bisect_left(positions, _list_position(before.started_at, before.id))
        page = positions[max(0, end - limit) : end]
    else:
        page = positions[:limit]
    ids = [-run_id for *_, run_id in page]
    if not ids:
        return []
    query = sa.select(*RUN_LIST_COLUMNS, sa.func.substr(llm_logs.c.user_prompt, 1, PROMPT_PREVIEW_CHARS).label("prompt_preview"))
    by_id = {row.id: dict(row._mapping) for row in connection.execute(query.where(llm_logs.c.id.in_(ids)))}
    return [by_id[run_id] for run_id in ids if run_id in by_id]


def _page(connection: Connection, source: RunSource, limit: int, after: PageKey | None, before: PageKey | None) -> list[dict[str, Any]]:
    """The page as at most two index range scans: dated runs by (start, id), then undated runs by id."""
    started, run_id = source.started, source.id
    dated, undated = started.is_not(None), started.is_(None)
    postgres = connection.dialect.name == "postgresql"

    def fetch(condition: sa.ColumnElement[bool], newest_first: bool, count: int, by_time: bool) -> list[dict[str, Any]]:
        if count <= 0:
            return []
        # The orders of ix_llm_logs_run_order and ix_check_verdicts_order, walked either way: Postgres
        # matches an index only with its NULLS placement (ids are never NULL).
        if newest_first:
            order_by = [started.desc().nulls_last() if postgres else started.desc(), run_id.desc()]
        else:
            order_by = [started.asc().nulls_first() if postgres else started.asc(), run_id.asc()]
        if not by_time:
            order_by = order_by[1:]
        query = (
            sa.select(*RUN_LIST_COLUMNS, sa.func.substr(llm_logs.c.user_prompt, 1, PROMPT_PREVIEW_CHARS).label("prompt_preview"))
            .select_from(source.from_clause)
            .where(*source.conditions, condition)
            .order_by(*order_by)
            .limit(count)
        )
        return [dict(row._mapping) for row in connection.execute(query)]

    def beyond(key: PageKey, older: bool) -> sa.ColumnElement[bool]:
        pair, at = sa.tuple_(started, run_id), sa.tuple_(sa.literal(key.started_at, UTCDateTime()), sa.literal(key.id, BigId))
        return pair < at if older else pair > at

    if before is None:
        if after is None:
            rows = fetch(dated, True, limit, True)
            return rows + fetch(undated, True, limit - len(rows), False)
        if after.started_at is None:
            return fetch(sa.and_(undated, run_id < after.id), True, limit, False)
        rows = fetch(beyond(after, older=True), True, limit, True)
        return rows + fetch(undated, True, limit - len(rows), False)
    if before.started_at is not None:
        return fetch(beyond(before, older=False), False, limit, True)[::-1]
    rows = fetch(sa.and_(undated, run_id > before.id), False, limit, False)
    rows += fetch(dated, False, limit - len(rows), True)
    return rows[::-1]


def _add_check_and_feedback_counts(connection: Connection, rows: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in rows]
    if not ids:
        return
    outcomes: dict[int, list[bool | None]] = {}
    for log_id, passed in connection.execute(
        sa.select(check_verdicts.c.log_id, check_verdicts.c.passed).where(check_verdicts.c.log_id.in_(ids))
    ):
        outcomes.setdefault(log_id, []).append(passed)
    votes: dict[tuple[int, bool], int] = {
        (log_id, is_good): count
        for log_id, is_good, count in connection.execute(
            sa.select(feedback.c.log_id, feedback.c.is_good, sa.func.count())
            .where(feedback.c.log_id.in_(ids))
            .group_by(feedback.c.log_id, feedback.c.is_good)
        )
    }
    for row in rows:
        passed = outcomes.get(row["id"], [])
        row["checks_passed"] = sum(1 for value in passed if value is True)
        row["checks_failed"] = sum(1 for value in passed if value is False)
        row["checks_not_applicable"] = sum(1 for value in passed if value is None)
        row["feedback_good"] = votes.get((row["id"], True), 0)
        row["feedback_bad"] = votes.get((row["id"], False), 0)


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
            # Every check of any run has its current verdict there, in an index led by the check name.
            check_names=_distinct_values(connection, check_verdicts.c.check_name),
        )
