"""The review app's reads (llm_monitoring/app.py): filters, a page of runs, totals, options, one run.

Their cost follows what a page shows, not the length of the history: pages are index range scans from
a PageKey (never OFFSET), a check filter reads the check's current verdicts in the list's order
(check_verdicts), and totals add up run_day_totals, or count at most TOTALS_CAP runs where only a
scan could total them. The list queries never select raw_json.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.feedback import list_feedback_rows
from llm_monitoring.storage.judgements import is_judge_row
from llm_monitoring.storage.rollups import version_sort_key
from llm_monitoring.storage.schema import (
    BigId,
    UTCDateTime,
    check_verdicts,
    eval_checks,
    feedback,
    judge_calls,
    llm_logs,
    run_day_totals,
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


TOTALS_CAP = 10_000  # runs counted before a filter the day totals cannot answer says "10,000+"


@dataclass(frozen=True)
class RunTotals:
    """Runs, tokens and cost of the runs a filter selects.

    `exact` is False when more than `runs` runs match a filter that only a scan could total (a check,
    feedback or text filter): the count stopped there and the sums (None) were not computed.
    """

    runs: int
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    total_cost: Decimal | None
    unpriced_runs: int | None
    exact: bool = True


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
class _Source:
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


def _source(filters: RunFilters, dialect: str) -> _Source:
    """The runs the filters select, read in the list's order from the narrowest place that has it: a
    check's current verdicts, else (Postgres) the search documents of a text search, else the runs."""
    from_clause: sa.FromClause = llm_logs
    started, run_id = llm_logs.c.run_started_at, llm_logs.c.id
    if _searches_documents(filters, dialect):
        from_clause = run_search.join(from_clause, llm_logs.c.id == run_search.c.log_id)
        started, run_id = run_search.c.run_started_at, run_search.c.log_id
    if not filters.check_name:
        conditions = _run_conditions(filters, dialect)
        source = _Source(from_clause, started, run_id, conditions, from_clause, run_id, conditions)
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
        *_run_conditions(filters, dialect, verdict),
    ]
    on_runs = _run_conditions(
        RunFilters(has_feedback=filters.has_feedback, feedback_is_good=filters.feedback_is_good, text=filters.text), dialect
    )
    joined = verdict.join(from_clause, llm_logs.c.id == verdict.c.log_id)
    both = on_verdicts + on_runs
    source = _Source(joined, verdict.c.run_started_at, verdict.c.log_id, both, joined, verdict.c.log_id, both)
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


def _run_conditions(filters: RunFilters, dialect: str, runs: sa.Table = llm_logs) -> list[sa.ColumnElement[bool]]:
    """The filters' conditions, the check filter aside (see _source): on llm_logs and its children, or
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

    On Postgres a word matches the start of a word, in run_search's documents (joined by _source); on
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
        source = _source(filters, connection.dialect.name)
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
    connection: Connection, source: _Source, limit: int, after: PageKey | None, before: PageKey | None
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


def _page(connection: Connection, source: _Source, limit: int, after: PageKey | None, before: PageKey | None) -> list[dict[str, Any]]:
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


def run_totals(database: Database, filters: RunFilters, *, cap: int | None = TOTALS_CAP) -> RunTotals:
    """Runs, tokens and cost (USD) of every run the filters select, not only one page.

    Provider, model, agent and time filters are answered from run_day_totals (plus the runs of the
    partial days at the ends of the range), exactly, in the same time at any history length. Other
    filters count at most `cap` runs (None: all of them) and say so.
    """
    with database.connect() as connection:
        if not (filters.check_name or filters.text or filters.has_feedback is not None or filters.feedback_is_good is not None):
            return _totals_by_day(connection, filters)
        return _counted_totals(connection, _source(filters, connection.dialect.name), cap)


_RUN_SUMS = (llm_logs.c.total_input_tokens, llm_logs.c.total_output_tokens, llm_logs.c.cache_read_tokens)


def _totals_by_day(connection: Connection, filters: RunFilters) -> RunTotals:
    start, end = filters.started_from, filters.started_before
    first_whole = None if start is None else _next_midnight(start)
    end_whole = None if end is None else _midnight(end)
    sums = _Sums()
    if first_whole is not None and end_whole is not None and first_whole >= end_whole:
        # Within a day or two partial days: the runs themselves, a day's worth at most.
        sums.add_runs(connection, filters, start, end)
        return sums.totals()
    totals = run_day_totals
    conditions = [
        column == value
        for column, value in ((totals.c.provider, filters.provider), (totals.c.model, filters.model), (totals.c.agent_name, filters.agent))
        if value is not None
    ]
    if first_whole is not None:
        conditions.append(totals.c.day >= first_whole.date())
    if end_whole is not None:
        conditions.append(totals.c.day < end_whole.date())
    sums.add(
        connection,
        totals,
        (totals.c.runs, totals.c.priced_runs, totals.c.input_tokens, totals.c.output_tokens, totals.c.cache_read_tokens),
        totals.c.total_cost,
        conditions,
    )
    if start is not None and first_whole is not None and start < first_whole:
        sums.add_runs(connection, filters, start, first_whole)
    if end is not None and end_whole is not None and end_whole < end:
        sums.add_runs(connection, filters, end_whole, end)
    return sums.totals()


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def _next_midnight(moment: datetime) -> datetime:
    midnight = _midnight(moment)
    return midnight if midnight == moment else midnight + timedelta(days=1)


@dataclass
class _Sums:
    runs: int = 0
    priced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(
        self,
        connection: Connection,
        from_clause: sa.FromClause,
        counts: Sequence[sa.ColumnElement[Any]],
        cost: sa.ColumnElement[Any],
        conditions: Sequence[sa.ColumnElement[bool]],
    ) -> None:
        """Add SUM(counts) and SUM(cost) of the rows of `from_clause` that meet `conditions`, in one
        read on Postgres."""
        postgres = connection.dialect.name == "postgresql"
        sums = [sa.func.coalesce(sa.func.sum(column), 0) for column in counts]
        values = connection.execute(
            sa.select(*sums, sa.func.sum(cost) if postgres else sa.null()).select_from(from_clause).where(*conditions)
        ).one()
        runs, priced, input_tokens, output_tokens, cache_read = (int(value) for value in values[:5])
        self.runs += runs
        self.priced += priced
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_read_tokens += cache_read
        # SQLite keeps costs as decimal text and its SUM would round through REAL: add them exactly here.
        self.cost += (values[5] or Decimal(0)) if postgres else _sqlite_money_sum(connection, from_clause, cost, conditions)

    def add_runs(self, connection: Connection, filters: RunFilters, start: datetime | None, end: datetime | None) -> None:
        """Add the runs of [start, end) that the provider, model and agent filters select."""
        window = RunFilters(provider=filters.provider, model=filters.model, agent=filters.agent, started_from=start, started_before=end)
        counts = (sa.literal(1), sa.case((llm_logs.c.total_cost.is_not(None), 1), else_=0), *_RUN_SUMS)
        self.add(connection, llm_logs, counts, llm_logs.c.total_cost, _run_conditions(window, connection.dialect.name))

    def totals(self) -> RunTotals:
        return RunTotals(
            runs=self.runs,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            total_cost=self.cost,
            unpriced_runs=self.runs - self.priced,
        )


def _sqlite_money_sum(
    connection: Connection, from_clause: sa.FromClause, column: sa.ColumnElement[Any], conditions: Sequence[sa.ColumnElement[bool]]
) -> Decimal:
    values = connection.scalars(sa.select(sa.cast(column, sa.String)).select_from(from_clause).where(*conditions, column.is_not(None)))
    return sum((Decimal(value) for value in values), Decimal(0))


def _counted_totals(connection: Connection, source: _Source, cap: int | None) -> RunTotals:
    """Totals of the runs `source` selects, reading at most cap + 1 of them."""
    if cap is not None:
        first = sa.select(source.count_id).select_from(source.count_from).where(*source.count_conditions).limit(cap + 1).subquery()
        if (connection.scalar(sa.select(sa.func.count()).select_from(first)) or 0) > cap:
            return RunTotals(
                runs=cap, input_tokens=None, output_tokens=None, cache_read_tokens=None, total_cost=None, unpriced_runs=None, exact=False
            )
    if source.count_from is source.from_clause:
        matching = sa.select(llm_logs.c.id, llm_logs.c.total_cost, *_RUN_SUMS).select_from(source.from_clause).where(*source.conditions)
    else:  # from the narrower side, each run looked up by its id
        joined = source.count_from.join(llm_logs, llm_logs.c.id == source.count_id)
        matching = sa.select(llm_logs.c.id, llm_logs.c.total_cost, *_RUN_SUMS).select_from(joined).where(*source.count_conditions)
    runs = matching.subquery()
    sums = _Sums()
    counts = (sa.literal(1), sa.case((runs.c.total_cost.is_not(None), 1), else_=0), *(runs.c[column.name] for column in _RUN_SUMS))
    sums.add(connection, runs, counts, runs.c.total_cost, [])
    return sums.totals()


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
