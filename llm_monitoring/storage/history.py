"""History rewrites: re-price and re-evaluate the runs of a window of days, in one transaction each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llm_monitoring.core.records import CheckResult, PriceResult
from llm_monitoring.storage.bulk import CHECK_COLUMNS, check_values, insert_rows
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import is_judge_row
from llm_monitoring.storage.rollups import refresh_verdicts, totals_rewritten
from llm_monitoring.storage.schema import Money, eval_checks, llm_logs
from llm_monitoring.storage.windows import in_window, runs_in_window, serialize_rewrites


def same_money(left: Decimal | None, right: Decimal | None) -> bool:
    if left is None or right is None:
        return left is None and right is None
    # Postgres keeps 12 decimals (NUMERIC(24, 12)); compare at that precision.
    step = Decimal("1e-12")
    return Decimal(left).quantize(step) == Decimal(right).quantize(step)


@dataclass(frozen=True)
class PricingRow:
    """What pricing a stored run needs, and what it was priced at."""

    id: int
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    requests: int | None
    run_started_at: datetime | None
    input_cost: Decimal | None
    output_cost: Decimal | None
    total_cost: Decimal | None
    pricing_status: str | None
    price_data_version: str | None
    value_notes: str | None  # JSON array, see llm_logs.value_notes

    def differs_from(self, price: PriceResult) -> bool:
        return not (
            same_money(self.input_cost, price.input_cost)
            and same_money(self.output_cost, price.output_cost)
            and same_money(self.total_cost, price.total_cost)
            and self.pricing_status == price.status
            and self.price_data_version == price.price_data_version
        )


_PRICING_COLUMNS = (
    llm_logs.c.id,
    llm_logs.c.provider,
    llm_logs.c.model,
    llm_logs.c.total_input_tokens,
    llm_logs.c.total_output_tokens,
    llm_logs.c.cache_read_tokens,
    llm_logs.c.cache_write_tokens,
    llm_logs.c.requests,
    llm_logs.c.run_started_at,
    llm_logs.c.input_cost,
    llm_logs.c.output_cost,
    llm_logs.c.total_cost,
    llm_logs.c.pricing_status,
    llm_logs.c.price_data_version,
    llm_logs.c.value_notes,
)


def reprice_window(
    database: Database,
    start: datetime,
    end: datetime,
    reprice: Callable[[PricingRow], PriceResult],
    *,
    chunk_size: int = 2000,
) -> tuple[int, int]:
    """Re-price every run started in [start, end) in one transaction; returns (runs seen, rows updated).

    Only rows whose costs, status or price-data version differ are written. Rows are read in id
    order, a chunk at a time, so memory stays bounded for any window.
    """
    update = (
        sa.update(llm_logs)
        .where(llm_logs.c.id == sa.bindparam("b_id"))
        .values(
            input_cost=sa.bindparam("b_input_cost", type_=Money()),
            output_cost=sa.bindparam("b_output_cost", type_=Money()),
            total_cost=sa.bindparam("b_total_cost", type_=Money()),
            pricing_status=sa.bindparam("b_status"),
            price_data_version=sa.bindparam("b_version"),
        )
    )
    seen = updated = 0
    with database.transaction() as connection:
        serialize_rewrites(connection, "llm_logs.costs")
        for rows in runs_in_window(connection, _PRICING_COLUMNS, start, end, chunk_size):
            seen += len(rows)
            changes = []
            for row in rows:
                stored = PricingRow(*row)
                price = reprice(stored)
                if stored.differs_from(price):
                    changes.append(
                        {
                            "b_id": stored.id,
                            "b_input_cost": price.input_cost,
                            "b_output_cost": price.output_cost,
                            "b_total_cost": price.total_cost,
                            "b_status": price.status,
                            "b_version": price.price_data_version,
                        }
                    )
            if changes:
                with totals_rewritten(connection, [change["b_id"] for change in changes]):
                    connection.execute(update, changes)
                updated += len(changes)
    return seen, updated


@dataclass(frozen=True)
class StoredRunLog:
    """A stored run's raw log, for re-parsing and re-evaluation."""

    id: int
    raw_json: str | None
    run_started_at: datetime | None


@dataclass
class ReevaluationOutcome:
    runs: int = 0
    evaluated: int = 0
    skipped: int = 0  # no stored log, or it no longer parses: its rows are left as they were
    rows_deleted: int = 0
    rows_inserted: int = 0
    verdicts_changed: int = 0  # (run, check) pairs whose verdict differs from this version's previous row
    other_version_rows: int = 0  # rows of other rule versions kept for the window's runs (judges' rows are never counted)


def replace_checks_in_window(
    database: Database,
    start: datetime,
    end: datetime,
    evaluate: Callable[[StoredRunLog], Sequence[CheckResult] | None],
    evaluator_version: str,
    *,
    keep_other_versions: bool = True,
    chunk_size: int = 500,
) -> ReevaluationOutcome:
    """Re-evaluate every run started in [start, end) and replace its rows of `evaluator_version`.

    One transaction: readers see the old rows or the new ones, never a mix, and never both.
    Rows of other rule versions stay unless `keep_other_versions` is False; LLM judges' rows always stay.
    """
    outcome = ReevaluationOutcome()
    now = datetime.now(UTC)
    window = in_window(llm_logs.c.run_started_at, start, end)
    with database.transaction() as connection:
        serialize_rewrites(connection, "eval_checks")
        columns = (llm_logs.c.id, llm_logs.c.raw_json, llm_logs.c.run_started_at)
        for rows in runs_in_window(connection, columns, start, end, chunk_size):
            outcome.runs += len(rows)
            new_rows: list[tuple[Any, ...]] = []
            evaluated_ids: list[int] = []
            for row in rows:
                checks = evaluate(StoredRunLog(*row))
                if checks is None:
                    outcome.skipped += 1
                    continue
                evaluated_ids.append(row[0])
                new_rows += check_values(row[0], checks, evaluator_version, now)
            if not evaluated_ids:
                continue
            previous = {
                (log_id, name): passed
                for log_id, name, passed in connection.execute(
                    sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.passed).where(
                        eval_checks.c.log_id.in_(evaluated_ids), eval_checks.c.evaluator_version == evaluator_version
                    )
                )
            }
            # LLM judges' rows are never the rules' business: whatever is kept or replaced, they stay.
            delete = sa.delete(eval_checks).where(eval_checks.c.log_id.in_(evaluated_ids), ~is_judge_row(eval_checks.c.evaluator_version))
            if keep_other_versions:
                delete = delete.where(eval_checks.c.evaluator_version == evaluator_version)
            outcome.rows_deleted += connection.execute(delete).rowcount
            insert_rows(connection, eval_checks, CHECK_COLUMNS, new_rows)
            refresh_verdicts(connection, evaluated_ids)
            outcome.rows_inserted += len(new_rows)
            outcome.evaluated += len(evaluated_ids)
            outcome.verdicts_changed += sum(
                1 for log_id, name, passed, *_ in new_rows if (log_id, name) not in previous or previous[(log_id, name)] != passed
            )
        outcome.other_version_rows = (
            connection.scalar(
                sa.select(sa.func.count())
                .select_from(eval_checks.join(llm_logs, eval_checks.c.log_id == llm_logs.c.id))
                .where(window, eval_checks.c.evaluator_version != evaluator_version, ~is_judge_row(eval_checks.c.evaluator_version))
            )
            or 0
        )
    return outcome
