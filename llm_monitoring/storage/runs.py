"""Reads of stored runs (one run, totals, days, runs lacking checks) and the purge of generated runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llm_monitoring.core.windows import day_start, stretches
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.rollups import forget_runs, id_chunks, totals_rewritten
from llm_monitoring.storage.schema import check_verdicts, eval_checks, feedback, judge_calls, llm_logs
from llm_monitoring.storage.windows import day_of, in_window


def count_rows(database: Database, table: sa.Table) -> int:
    with database.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def get_log(database: Database, log_id: int) -> dict[str, Any] | None:
    with database.connect() as connection:
        row = connection.execute(sa.select(llm_logs).where(llm_logs.c.id == log_id)).first()
        return dict(row._mapping) if row else None


def run_summary(database: Database) -> dict[str, Any]:
    """Totals for the command line: runs, tokens, cost by model, pass rates of the current verdicts."""
    with database.connect() as connection:
        totals = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.sum(llm_logs.c.total_input_tokens),
                sa.func.sum(llm_logs.c.total_output_tokens),
                sa.func.sum(llm_logs.c.cache_read_tokens),
            )
        ).one()
        by_model: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        for provider, model, total_cost in connection.execute(sa.select(llm_logs.c.provider, llm_logs.c.model, llm_logs.c.total_cost)):
            entry = by_model.setdefault((provider, model), {"runs": 0, "cost": Decimal(0), "unpriced": 0})
            entry["runs"] += 1
            if total_cost is None:
                entry["unpriced"] += 1
            else:
                entry["cost"] += total_cost
        # Each run's current verdict of each check (not every version's rows): an index-only count.
        checks = connection.execute(
            sa.select(
                check_verdicts.c.check_name,
                sa.func.count(check_verdicts.c.passed),
                sa.func.sum(sa.case((check_verdicts.c.passed.is_(True), 1), else_=0)),
                sa.func.count(),
            ).group_by(check_verdicts.c.check_name)
        ).all()
    return {
        "runs": totals[0],
        "input_tokens": totals[1] or 0,
        "output_tokens": totals[2] or 0,
        "cache_read_tokens": totals[3] or 0,
        "by_model": by_model,
        "checks": {name: {"applicable": applicable, "passed": passed or 0, "rows": rows} for name, applicable, passed, rows in checks},
    }


def has_runs_table(database: Database) -> bool:
    """Whether the schema exists (the app only reads; the first ingest creates it)."""
    with database.connect() as connection:
        return sa.inspect(connection).has_table(llm_logs.name)


def run_days(database: Database, where: sa.ColumnElement[bool] | None = None) -> set[date]:
    """The UTC days of the dated runs `where` selects (every run without it), found in SQL."""
    with database.connect() as connection:
        day = day_of(llm_logs.c.run_started_at, connection.dialect.name)
        conditions = [llm_logs.c.run_started_at.is_not(None), *([] if where is None else [where])]
        return set(connection.scalars(sa.select(day).where(*conditions).distinct()))


def run_days_in_id_ranges(database: Database, ranges: Sequence[tuple[int, int]]) -> set[date]:
    """UTC days of the runs with ids in any of the [first, last] ranges: the days ingest runs stored."""
    if not ranges:
        return set()
    return run_days(database, sa.or_(*(llm_logs.c.id.between(first, last) for first, last in ranges)))


def run_day_span(database: Database) -> tuple[date, date] | None:
    """First and last UTC day with runs, or None for an empty table."""
    with database.connect() as connection:
        first, last = connection.execute(sa.select(sa.func.min(llm_logs.c.run_started_at), sa.func.max(llm_logs.c.run_started_at))).one()
    if first is None or last is None:
        return None
    return first.date(), last.date()


def runs_outside_window(database: Database, start: datetime, end: datetime) -> int:
    """Stored runs not started in [start, end): undated ones included."""
    with database.connect() as connection:
        return (
            connection.scalar(
                sa.select(sa.func.count()).where(
                    sa.or_(llm_logs.c.run_started_at.is_(None), ~in_window(llm_logs.c.run_started_at, start, end))
                )
            )
            or 0
        )


def runs_by_day(database: Database, days: Iterable[date]) -> dict[date, int]:
    """How many runs each of these UTC days holds: one grouped read of the run-time index per stretch
    of consecutive days (late logs make the judged days a week now and a day a month ago)."""
    wanted = set(days)
    counted: dict[date, int] = {}
    with database.connect() as connection:
        day = day_of(llm_logs.c.run_started_at, connection.dialect.name)
        for first, last in stretches(wanted):
            window = in_window(llm_logs.c.run_started_at, day_start(first), day_start(last + timedelta(days=1)))
            counted.update(connection.execute(sa.select(day, sa.func.count()).where(window).group_by(day)).tuples().all())
    return {each: counted.get(each, 0) for each in sorted(wanted)}


def runs_missing_checks(
    database: Database, evaluator_version: str, check_names: Sequence[str], start: datetime | None = None, end: datetime | None = None
) -> list[tuple[int, datetime | None]]:
    """Runs (id, run_started_at) lacking a row of `evaluator_version` for any of `check_names`."""
    present = sa.select(eval_checks.c.log_id, sa.func.count(sa.distinct(eval_checks.c.check_name)).label("checks")).where(
        eval_checks.c.evaluator_version == evaluator_version, eval_checks.c.check_name.in_(list(check_names))
    )
    if start is not None and end is not None:
        # Count the window's runs only: the gate runs after every ingest, the table holds every run.
        present = present.where(eval_checks.c.log_id.in_(sa.select(llm_logs.c.id).where(in_window(llm_logs.c.run_started_at, start, end))))
    present = present.group_by(eval_checks.c.log_id).subquery()
    query = (
        sa.select(llm_logs.c.id, llm_logs.c.run_started_at)
        .select_from(llm_logs.outerjoin(present, present.c.log_id == llm_logs.c.id))
        .where(sa.func.coalesce(present.c.checks, 0) < len(check_names))
        .order_by(llm_logs.c.run_started_at)
    )
    if start is not None and end is not None:
        query = query.where(in_window(llm_logs.c.run_started_at, start, end))
    with database.connect() as connection:
        return [(log_id, started) for log_id, started in connection.execute(query)]


# ---------------------------------------------------------------------------- generated (fake) data
# llm_monitoring/fake_data.py stores its runs through store_runs with origin "fake"; this deletes them.


def origin_run_days(database: Database, origin: str) -> set[date]:
    """The UTC days of the runs of one origin (what purge_origin would change)."""
    return run_days(database, llm_logs.c.origin == origin)


def purge_origin(database: Database, origin: str) -> dict[str, int]:
    """Delete the runs of one origin with their checks and feedback, in one transaction; rows deleted per table."""
    deleted = {"llm_logs": 0, "eval_checks": 0, "feedback": 0}
    with database.transaction() as connection:
        ids = list(connection.scalars(sa.select(llm_logs.c.id).where(llm_logs.c.origin == origin).order_by(llm_logs.c.id)))
        for chunk in id_chunks(ids):
            forget_runs(connection, chunk)
            # Children first and explicitly: a SQLite file created without the foreign-key pragma has no cascade.
            deleted["feedback"] += connection.execute(sa.delete(feedback).where(feedback.c.log_id.in_(chunk))).rowcount
            connection.execute(sa.delete(judge_calls).where(judge_calls.c.log_id.in_(chunk)))
            deleted["eval_checks"] += connection.execute(sa.delete(eval_checks).where(eval_checks.c.log_id.in_(chunk))).rowcount
            with totals_rewritten(connection, chunk):
                deleted["llm_logs"] += connection.execute(sa.delete(llm_logs).where(llm_logs.c.id.in_(chunk))).rowcount
    return deleted
