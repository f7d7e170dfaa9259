"""Recomputing history over a window of run days: re-price, re-evaluate, rebuild the daily tables.

Plain Python on top of the Database, like `ingest.py`; the partitioned Dagster assets call it with
their partition time window, so a backfill of thirty days is one call over a thirty-day window.
Windows are [start, end) on `llm_logs.run_started_at`, in UTC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from genai_prices import UpdatePrices, data_snapshot
from genai_prices.update_prices import DEFAULT_UPDATE_URL

from llm_monitoring.core import aggregates, eval_aggregates, evaluation
from llm_monitoring.core.formats import parse_stored_run
from llm_monitoring.core.pricing import PRICE_DATA_VERSION, forget_price_data, price_run
from llm_monitoring.core.records import CheckResult, LogRecord, ParseError, PriceResult
from llm_monitoring.core.windows import day_range, day_start, stretches
from llm_monitoring.policies import custom_prices
from llm_monitoring.retention import first_rebuildable_day
from llm_monitoring.storage.daily import (
    EVAL_COLUMNS,
    FEEDBACK_COLUMNS,
    USAGE_COLUMNS,
    eval_rows,
    feedback_rows,
    replace_daily_rows,
    usage_rows,
)
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.history import (
    PricingRow,
    ReevaluationOutcome,
    StoredRunLog,
    replace_checks_in_window,
    reprice_window,
    same_money,
)

logger = logging.getLogger("llm_monitoring.recompute")

PRICE_REFRESH_TIMEOUT_SECONDS = 30.0


# ---------------------------------------------------------------------------- re-pricing


@dataclass
class ModelCostChange:
    runs: int = 0
    changed: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)


@dataclass
class RepriceReport:
    runs: int = 0
    rows_updated: int = 0  # rows written: costs, status or price-data version differ
    cost_changed: int = 0  # of which the cost or the pricing status changed
    newly_priced: int = 0
    newly_unpriced: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    price_data_version: str = PRICE_DATA_VERSION
    price_refresh: str = "not requested"
    prices_file: str = "none"  # the price file applied (PRICES_FILE) and its version, or "none"
    priced_from_file: int = 0  # runs whose price came from the price file
    by_model: dict[str, ModelCostChange] = field(default_factory=dict)

    @property
    def cost_delta(self) -> Decimal:
        return self.cost_after - self.cost_before

    def line(self) -> str:
        return (
            f"{self.runs} runs: {self.rows_updated} rows updated, {self.cost_changed} with a new cost or status "
            f"({self.newly_priced} newly priced, {self.newly_unpriced} newly unpriced); "
            f"cost ${self.cost_before:.6f} -> ${self.cost_after:.6f} ({self.cost_delta:+.6f}) with {self.price_data_version}"
            + (
                f" and the price file {self.prices_file} ({self.priced_from_file} runs priced from it)"
                if self.prices_file != "none"
                else ""
            )
        )


def record_for_pricing(row: PricingRow) -> LogRecord:
    """The stored fields pricing reads, as a LogRecord (the rest of the run is not needed)."""
    return LogRecord(
        agent_name=None,
        provider=row.provider,
        model=row.model,
        user_prompt=None,
        instructions=None,
        assistant_answer=None,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        requests=row.requests,
        tool_calls=(),
        finish_reasons=(),
        run_started_at=row.run_started_at,
        run_finished_at=None,
        # The parser's notes say why counts it dropped are NULL: invalid usage stays invalid.
        value_notes=tuple(json.loads(row.value_notes)) if row.value_notes else (),
    )


@contextmanager
def price_data(refresh: bool, url: str | None = None, timeout: float = PRICE_REFRESH_TIMEOUT_SECONDS) -> Iterator[tuple[str, str]]:
    """The price-data version to record and a note on the refresh, with fresh prices if asked and reachable.

    A failed refresh (no network, bad payload) is reported and pricing uses the installed data.
    The refreshed prices apply inside the block only, so one re-pricing never changes what later
    ingests in the same process use.
    """
    if not refresh:
        yield PRICE_DATA_VERSION, "not requested"
        return
    url = url or DEFAULT_UPDATE_URL
    before = data_snapshot.get_snapshot()
    updater = UpdatePrices(url=url)
    updater.start()
    try:
        updated = updater.wait(timeout)
        problem = None if updated else f"no answer within {timeout:.0f}s"
    # genai-prices re-raises whatever its fetch raised (HTTP, JSON, validation errors): all of
    # them mean "keep the installed prices", and the reason goes into the report.
    except Exception as error:
        updated, problem = False, f"{type(error).__name__}: {error}"
    finally:
        updater.stop()
    try:
        forget_price_data()
        if updated:
            snapshot = data_snapshot.get_snapshot()
            version = f"{PRICE_DATA_VERSION} + update {snapshot.timestamp:%Y-%m-%dT%H:%M:%S}"
            yield version, f"refreshed from {url}: {len(snapshot.providers)} providers"
        else:
            logger.warning("price refresh from %s failed (%s); using the installed prices", url, problem)
            yield PRICE_DATA_VERSION, f"refresh from {url} failed ({problem}); priced with the installed data"
    finally:
        data_snapshot.set_custom_snapshot(before)
        forget_price_data()


def reprice(
    database: Database,
    start: datetime,
    end: datetime,
    *,
    refresh_prices: bool = False,
    update_url: str | None = None,
) -> RepriceReport:
    """Re-price every run started in [start, end) and store what changed, in one transaction.

    The price file (PRICES_FILE) in force now applies, as in the ingest: editing it and re-pricing
    a window moves the runs it matches to its new prices (their price_data_version names its new
    content) and runs it no longer matches back to genai-prices."""
    report = RepriceReport()
    custom = custom_prices()
    if custom is not None:
        report.prices_file = f"{custom.version} ({custom.source}, {len(custom.entries)} entries)"
    with price_data(refresh_prices, update_url) as (version, note):
        report.price_data_version, report.price_refresh = version, note

        def reprice_row(row: PricingRow) -> PriceResult:
            price = price_run(record_for_pricing(row), custom, genai_version=version)
            if custom is not None and price.priced and price.price_data_version == custom.version:
                report.priced_from_file += 1
            _tally_price(report, row, price)
            return price

        report.runs, report.rows_updated = reprice_window(database, start, end, reprice_row)
    return report


def _tally_price(report: RepriceReport, row: PricingRow, price: PriceResult) -> None:
    model = report.by_model.setdefault(f"{row.provider or '?'}/{row.model or '?'}", ModelCostChange())
    before, after = row.total_cost or Decimal(0), price.total_cost or Decimal(0)
    model.runs += 1
    model.cost_before += before
    model.cost_after += after
    report.cost_before += before
    report.cost_after += after
    changed = row.pricing_status != price.status or not same_money(row.total_cost, price.total_cost)
    if changed:
        model.changed += 1
        report.cost_changed += 1
        report.newly_priced += row.total_cost is None and price.total_cost is not None
        report.newly_unpriced += row.total_cost is not None and price.total_cost is None


# ---------------------------------------------------------------------------- re-evaluation


@dataclass
class ReevaluateReport:
    evaluator_version: str
    outcome: ReevaluationOutcome
    applicable: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # runs skipped, with the reason

    def line(self) -> str:
        o = self.outcome
        return (
            f"{o.runs} runs: {o.evaluated} re-evaluated with evaluator {self.evaluator_version}, {o.skipped} skipped; "
            f"{o.rows_deleted} rows replaced by {o.rows_inserted}, {o.verdicts_changed} verdicts changed, "
            f"{o.other_version_rows} rows of other versions kept"
        )

    def pass_rates(self) -> list[dict[str, Any]]:
        return [
            {
                "check_name": name,
                "applicable": self.applicable[name],
                "passed": self.passed.get(name, 0),
                "pass_rate": round(self.passed.get(name, 0) / self.applicable[name], 4) if self.applicable[name] else None,
            }
            for name in sorted(self.applicable)
        ]


def reevaluate(database: Database, start: datetime, end: datetime, *, keep_other_versions: bool = True) -> ReevaluateReport:
    """Re-parse the stored logs of runs started in [start, end), rerun the checks and replace this version's rows."""
    # Read at call time: the version belongs to the rules in force now, not at import.
    version = evaluation.EVALUATOR_VERSION
    report = ReevaluateReport(version, ReevaluationOutcome())

    def evaluate_stored(run: StoredRunLog) -> list[CheckResult] | None:
        if not run.raw_json:
            report.problems.append(f"run {run.id}: no stored log")
            return None
        try:
            record = parse_stored_run(run.raw_json, fallback_time=run.run_started_at)
        except ParseError as error:
            report.problems.append(f"run {run.id}: {error.reason}")
            return None
        checks = evaluation.evaluate_run(record)
        for check in checks:
            report.applicable.setdefault(check.check_name, 0)
            if check.passed is not None:
                report.applicable[check.check_name] += 1
                report.passed[check.check_name] = report.passed.get(check.check_name, 0) + bool(check.passed)
        return checks

    report.outcome = replace_checks_in_window(database, start, end, evaluate_stored, version, keep_other_versions=keep_other_versions)
    return report


# ---------------------------------------------------------------------------- daily aggregates


@dataclass(frozen=True)
class DailyRebuild:
    table: str
    first_day: date
    end_day: date  # exclusive
    rows: list[dict[str, Any]]
    deleted: int

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days


def _rebuild(
    database: Database, table: str, start: datetime, end: datetime, compute: Callable[[], dict[str, list[dict[str, Any]]]]
) -> DailyRebuild:
    """Rewrite the days of [start, end) of `table` (and of the tables `compute` also returns rows of)."""
    first_day, end_day = day_range(start, end)
    # Days whose runs retention deleted keep their rows: rebuilt from what is left, they would be lost.
    kept_from = first_rebuildable_day(database)
    if kept_from is not None and first_day < kept_from:
        first_day = min(kept_from, end_day)
    if first_day >= end_day:
        return DailyRebuild(table, first_day, end_day, [], 0)

    def build() -> dict[str, list[dict[str, Any]]]:
        now = datetime.now(UTC)
        return {
            name: [{**row, "computed_at": now} for row in rows if first_day <= row["day"] < end_day] for name, rows in compute().items()
        }

    deleted, rows = replace_daily_rows(database, table, first_day, end_day, build)
    return DailyRebuild(table, first_day, end_day, rows[table], deleted)


def rebuild_daily_usage(database: Database, start: datetime, end: datetime) -> DailyRebuild:
    return _rebuild(
        database,
        "daily_usage",
        start,
        end,
        lambda: {"daily_usage": aggregates.summarize_daily_usage(usage_rows(database, start, end), USAGE_COLUMNS)},
    )


def rebuild_daily_eval_summary(database: Database, start: datetime, end: datetime) -> DailyRebuild:
    """daily_eval_summary, and daily_eval_breakdown with it (the same checks by provider, model and agent)."""

    def compute() -> dict[str, list[dict[str, Any]]]:
        breakdown = eval_aggregates.summarize_eval_breakdown(eval_rows(database, start, end), EVAL_COLUMNS)
        return {"daily_eval_summary": eval_aggregates.roll_up_evals(breakdown), "daily_eval_breakdown": breakdown}

    return _rebuild(database, "daily_eval_summary", start, end, compute)


def rebuild_daily_feedback(database: Database, start: datetime, end: datetime) -> DailyRebuild:
    return _rebuild(
        database,
        "daily_feedback",
        start,
        end,
        lambda: {"daily_feedback": aggregates.summarize_daily_feedback(feedback_rows(database, start, end), FEEDBACK_COLUMNS)},
    )


RUN_AGGREGATES: dict[str, Callable[[Database, datetime, datetime], DailyRebuild]] = {
    "daily_usage": rebuild_daily_usage,
    "daily_eval_summary": rebuild_daily_eval_summary,
}


def rebuild_every_daily_table(database: Database, days: Iterable[date]) -> None:
    """daily_usage, daily_eval_summary (with daily_eval_breakdown) and daily_feedback for exactly these
    days: after runs were stored or deleted outside an ingest (fake data and its purge)."""
    days = set(days)
    rebuild_run_days(database, days)
    for first, last in stretches(days):
        rebuild_daily_feedback(database, day_start(first), day_start(last + timedelta(days=1)))


def rebuild_run_days(database: Database, days: Iterable[date]) -> dict[str, list[DailyRebuild]]:
    """Rebuild daily_usage and daily_eval_summary for exactly these days, one window per stretch of
    consecutive days (scattered days of a backlog are not joined into one long window)."""
    rebuilt: dict[str, list[DailyRebuild]] = {table: [] for table in RUN_AGGREGATES}
    for first, last in stretches(days):
        start, end = day_start(first), day_start(last + timedelta(days=1))
        for table, rebuild in RUN_AGGREGATES.items():
            rebuilt[table].append(rebuild(database, start, end))
    return rebuilt
