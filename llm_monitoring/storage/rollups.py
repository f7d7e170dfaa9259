"""The summaries the review app reads instead of the history: run_day_totals, check_verdicts and
(Postgres) run_search.

Both are kept by the writers themselves, in the transaction that changes the rows they summarize, so
they are exact at every moment (no refresh to wait for, nothing to reconcile). Every write of
llm_logs or eval_checks goes through the functions here:

- new runs: add_to_day_totals, and their checks as their current verdicts (storage/bulk.py), and
  record_search;
- runs changed or deleted: `with totals_rewritten(connection, ids):` around the statement;
- checks rewritten (re-evaluation, judges): refresh_verdicts for the runs concerned;
- a database from before these tables: backfill_summaries, once, from the rows themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from llm_monitoring.core.judges import JUDGE_VERSION_PREFIX, is_judge_version
from llm_monitoring.storage.schema import RUN_SEARCH_DOCUMENT, check_verdicts, eval_checks, llm_logs, run_day_totals, run_search

ID_CHUNK = 5_000  # ids per IN list: far below every driver's parameter limit

# ---------------------------------------------------------------------------- run_day_totals


@dataclass(frozen=True)
class RunAmounts:
    """What run_day_totals adds up of one run."""

    started_at: datetime | None
    provider: str | None
    model: str | None
    agent_name: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    total_cost: Decimal | str | None  # SQLite's driver values are decimal text


AMOUNT_COLUMNS = (
    "run_started_at",
    "provider",
    "model",
    "agent_name",
    "total_input_tokens",
    "total_output_tokens",
    "cache_read_tokens",
    "total_cost",
)
_SUMS = ("runs", "priced_runs", "input_tokens", "output_tokens", "cache_read_tokens", "total_cost")
_KEY_COLUMNS = ("day", "provider", "model", "agent_name")


def utc_day(moment: datetime | None) -> date | None:
    if moment is None:
        return None
    # SQLite's driver gives naive UTC datetimes.
    return (moment if moment.tzinfo is None else moment.astimezone(UTC)).date()


def totals_key(day: date | None, provider: str | None, model: str | None, agent_name: str | None) -> str:
    parts = ["\x00" if value is None else str(value) for value in (day, provider, model, agent_name)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _deltas(runs: Iterable[RunAmounts], sign: int) -> dict[str, dict[str, Any]]:
    """Per totals key: the key's columns and the signed sums of `runs`."""
    grouped: dict[str, dict[str, Any]] = {}
    for run in runs:
        day = utc_day(run.started_at)
        key = totals_key(day, run.provider, run.model, run.agent_name)
        row = grouped.get(key)
        if row is None:
            row = grouped[key] = {
                "totals_key": key,
                "day": day,
                "provider": run.provider,
                "model": run.model,
                "agent_name": run.agent_name,
                **dict.fromkeys(_SUMS[:-1], 0),
                "total_cost": Decimal(0),
            }
        row["runs"] += sign
        row["input_tokens"] += sign * (run.input_tokens or 0)
        row["output_tokens"] += sign * (run.output_tokens or 0)
        row["cache_read_tokens"] += sign * (run.cache_read_tokens or 0)
        if run.total_cost is not None:
            row["priced_runs"] += sign
            row["total_cost"] += sign * Decimal(run.total_cost)
    return grouped


def add_to_day_totals(connection: Connection, runs: Iterable[RunAmounts], sign: int = 1) -> None:
    """Add (sign 1) or take away (sign -1) runs' amounts from run_day_totals."""
    deltas = _deltas(runs, sign)
    if not deltas:
        return
    # Keys in one order in every writer: two transactions never wait on each other's rows in a cycle.
    rows = [deltas[key] for key in sorted(deltas)]
    if connection.dialect.name == "postgresql":
        statement = postgresql.insert(run_day_totals)
        table = run_day_totals.c
        statement = statement.on_conflict_do_update(
            index_elements=["totals_key"], set_={name: table[name] + statement.excluded[name] for name in _SUMS}
        )
        connection.execute(statement, rows)
    else:
        _merge_sqlite(connection, rows)
    if sign < 0:
        emptied = [row["totals_key"] for row in rows]
        connection.execute(sa.delete(run_day_totals).where(run_day_totals.c.totals_key.in_(emptied), run_day_totals.c.runs <= 0))


def _merge_sqlite(connection: Connection, rows: list[dict[str, Any]]) -> None:
    # SQLite keeps costs as decimal text, and its arithmetic would round them through REAL: add here.
    # The transaction holds SQLite's only write lock, so nothing changes between the read and the write.
    keys = [row["totals_key"] for row in rows]
    held = {
        row["totals_key"]: row
        for row in connection.execute(sa.select(run_day_totals).where(run_day_totals.c.totals_key.in_(keys))).mappings()
    }
    for row in rows:
        before = held.get(row["totals_key"])
        if before is not None:
            for name in _SUMS:
                row[name] = before[name] + row[name]
    connection.execute(sa.delete(run_day_totals).where(run_day_totals.c.totals_key.in_(list(held))))
    connection.execute(sa.insert(run_day_totals), rows)


def amounts_of(connection: Connection, log_ids: Sequence[int]) -> list[RunAmounts]:
    """The stored amounts of these runs, as run_day_totals counts them now."""
    amounts: list[RunAmounts] = []
    for chunk in id_chunks(log_ids):
        query = sa.select(*(llm_logs.c[name] for name in AMOUNT_COLUMNS)).where(llm_logs.c.id.in_(chunk))
        amounts += [RunAmounts(*row) for row in connection.execute(query)]
    return amounts


@contextmanager
def totals_rewritten(connection: Connection, log_ids: Sequence[int]) -> Iterator[None]:
    """Around an update or delete of these runs: their amounts leave run_day_totals before, and what
    is left of them comes back after."""
    add_to_day_totals(connection, amounts_of(connection, log_ids), sign=-1)
    yield
    add_to_day_totals(connection, amounts_of(connection, log_ids))


# ---------------------------------------------------------------------------- check_verdicts

# A verdict row repeats these columns of its run (see check_verdicts in schema.py).
RUN_COLUMNS_IN_VERDICTS = ("run_started_at", "provider", "model", "agent_name")
VERDICT_COLUMNS = ("log_id", "check_name", "passed", "evaluator_version", *RUN_COLUMNS_IN_VERDICTS)


def version_sort_key(version: str) -> tuple[int, str]:
    """Rule versions are numbers kept as text: "10" is newer than "9", so the length is compared first."""
    return len(version), version


def _recency(row: Mapping[str, Any]) -> tuple[Any, ...]:
    # A check is either a rule's (newest version number) or an LLM judge's (versions are hashes: the
    # row written last).
    version = row["evaluator_version"]
    return (row["created_at"], version) if is_judge_version(version) else version_sort_key(version)


def current_checks(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A run's current verdicts: per check, its newest row, so a check an evaluator dropped keeps its
    last verdict. check_verdicts holds exactly these rows."""
    newest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        held = newest.get(row["check_name"])
        if held is None or _recency(row) > _recency(held):
            newest[row["check_name"]] = row
    return list(newest.values())


def record_verdicts(connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Verdicts of runs stored in this transaction: their only rows, so their current ones."""
    values = [{name: row[name] for name in VERDICT_COLUMNS} for row in rows]
    if values:
        connection.execute(sa.insert(check_verdicts), values)


def refresh_verdicts(connection: Connection, log_ids: Iterable[int]) -> None:
    """Recompute the current verdicts of these runs from eval_checks, after their checks changed.

    Only the runs whose verdicts differ are rewritten: a re-evaluation under the same version, or a
    judge's second opinion that agrees, leaves check_verdicts (and its dead rows, WAL and index
    growth) as it was."""
    for chunk in id_chunks(sorted(set(log_ids))):
        held = _verdicts_by_run(connection.execute(sa.select(check_verdicts).where(check_verdicts.c.log_id.in_(chunk))).mappings())
        query = (
            sa.select(
                eval_checks.c.log_id,
                eval_checks.c.check_name,
                eval_checks.c.passed,
                eval_checks.c.evaluator_version,
                eval_checks.c.created_at,
                *(llm_logs.c[name] for name in RUN_COLUMNS_IN_VERDICTS),
            )
            .select_from(eval_checks.join(llm_logs, llm_logs.c.id == eval_checks.c.log_id))
            .where(eval_checks.c.log_id.in_(chunk))
        )
        checks_by_run: dict[int, list[Mapping[str, Any]]] = {}
        for row in connection.execute(query).mappings():
            checks_by_run.setdefault(row["log_id"], []).append(row)
        wanted = _verdicts_by_run(row for rows in checks_by_run.values() for row in current_checks(rows))
        changed = [log_id for log_id in chunk if held.get(log_id) != wanted.get(log_id)]
        if changed:
            connection.execute(sa.delete(check_verdicts).where(check_verdicts.c.log_id.in_(changed)))
            record_verdicts(connection, [verdict for log_id in changed for verdict in wanted.get(log_id, {}).values()])


def _verdicts_by_run(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """Verdict rows (VERDICT_COLUMNS) by run and check."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["log_id"], {})[row["check_name"]] = {name: row[name] for name in VERDICT_COLUMNS}
    return found


def forget_runs(connection: Connection, log_ids: Sequence[int]) -> None:
    """Before deleting runs: their verdicts go (a SQLite file without the foreign-key pragma has no cascade)."""
    for chunk in id_chunks(log_ids):
        connection.execute(sa.delete(check_verdicts).where(check_verdicts.c.log_id.in_(chunk)))


# ---------------------------------------------------------------------------- run_search


def record_search(connection: Connection, log_ids: Sequence[int]) -> None:
    """The search documents of runs stored in this transaction, from their rows (Postgres only)."""
    if connection.dialect.name != "postgresql" or not log_ids:
        return
    for chunk in id_chunks(log_ids):
        documents = sa.select(llm_logs.c.id, llm_logs.c.run_started_at, RUN_SEARCH_DOCUMENT).where(llm_logs.c.id.in_(chunk))
        connection.execute(sa.insert(run_search).from_select(["log_id", "run_started_at", "document"], documents))


# ---------------------------------------------------------------------------- upgrades


def backfill_summaries(connection: Connection, created: set[str]) -> None:
    """Fill the summary tables this upgrade just created from the runs and checks already stored."""
    if run_day_totals.name in created:
        _backfill_day_totals(connection)
    if check_verdicts.name in created:
        _backfill_verdicts(connection)
    if run_search.name in created and connection.dialect.name == "postgresql":
        documents = sa.select(llm_logs.c.id, llm_logs.c.run_started_at, RUN_SEARCH_DOCUMENT)
        connection.execute(sa.insert(run_search).from_select(["log_id", "run_started_at", "document"], documents))


def _backfill_day_totals(connection: Connection) -> None:
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(llm_logs.c.id, *(llm_logs.c[name] for name in AMOUNT_COLUMNS))
            .where(llm_logs.c.id > last_id)
            .order_by(llm_logs.c.id)
            .limit(50_000)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        add_to_day_totals(connection, [RunAmounts(*row[1:]) for row in rows])


def _backfill_verdicts(connection: Connection) -> None:
    """One statement: the newest row per run and check, in the order of current_checks (rule versions by
    number, an LLM judge's by time)."""
    version, created_at = eval_checks.c.evaluator_version, eval_checks.c.created_at
    judge = version.startswith(JUDGE_VERSION_PREFIX, autoescape=True)
    newest_first = sa.func.row_number().over(
        partition_by=(eval_checks.c.log_id, eval_checks.c.check_name),
        order_by=(
            sa.case((judge, created_at)).desc().nulls_last(),
            sa.case((~judge, sa.func.length(version))).desc().nulls_last(),
            version.desc(),
        ),
    )
    ranked = (
        sa.select(
            eval_checks.c.log_id,
            eval_checks.c.check_name,
            eval_checks.c.passed,
            version,
            *(llm_logs.c[name] for name in RUN_COLUMNS_IN_VERDICTS),
            newest_first.label("rank"),
        )
        .select_from(eval_checks.join(llm_logs, llm_logs.c.id == eval_checks.c.log_id))
        .subquery()
    )
    connection.execute(
        sa.insert(check_verdicts).from_select(
            VERDICT_COLUMNS, sa.select(*(ranked.c[name] for name in VERDICT_COLUMNS)).where(ranked.c.rank == 1)
        )
    )


def id_chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), ID_CHUNK):
        yield values[start : start + ID_CHUNK]
