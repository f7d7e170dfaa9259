"""The review app's totals: runs, tokens and cost of every run a filter selects, not only one page.

Provider, model, agent and time filters add up run_day_totals (plus the runs of the partial days at the
ends of the range): exact, in the same time at any history length. Check, ratings and text filters count
at most TOTALS_CAP runs from the narrowest index that holds them (storage/review.py's RunSource).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.core.windows import day_start, first_day_from
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.review import RunFilters, RunSource, run_conditions, run_source
from llm_monitoring.storage.schema import llm_logs, run_day_totals

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


def run_totals(database: Database, filters: RunFilters, *, cap: int | None = TOTALS_CAP) -> RunTotals:
    """Runs, tokens and cost (USD) of every run the filters select, not only one page.

    Provider, model, agent and time filters are answered from run_day_totals (plus the runs of the
    partial days at the ends of the range), exactly, in the same time at any history length. Other
    filters count at most `cap` runs (None: all of them) and say so.
    """
    with database.connect() as connection:
        if not (filters.check_name or filters.text or filters.has_feedback is not None or filters.feedback_is_good is not None):
            return _totals_by_day(connection, filters)
        return _counted_totals(connection, run_source(filters, connection.dialect.name), cap)


_RUN_SUMS = (llm_logs.c.total_input_tokens, llm_logs.c.total_output_tokens, llm_logs.c.cache_read_tokens)


def _totals_by_day(connection: Connection, filters: RunFilters) -> RunTotals:
    start, end = filters.started_from, filters.started_before
    first_whole = None if start is None else day_start(first_day_from(start))
    end_whole = None if end is None else day_start(end.astimezone(UTC).date())
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
        self.add(connection, llm_logs, counts, llm_logs.c.total_cost, run_conditions(window, connection.dialect.name))

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


def _counted_totals(connection: Connection, source: RunSource, cap: int | None) -> RunTotals:
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
