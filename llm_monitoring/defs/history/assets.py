"""Re-pricing and re-evaluation of stored runs, partitioned by run day (their jobs: history/jobs.py).

Both assets are views of the ingest's tables over a window of days (`log_costs`: the cost columns
of llm_logs; `log_evaluations`: the current evaluator version's rows of eval_checks). A backfill
over any range of days is one run (BackfillPolicy.single_run) that rewrites the window in one
transaction, and the same job rebuilds the matching daily aggregate for that window.
"""

import dagster as dg
from pydantic import Field

from llm_monitoring.config import InvalidSetting
from llm_monitoring.core.windows import window_label
from llm_monitoring.defs import keys
from llm_monitoring.defs.metadata import markdown_table
from llm_monitoring.defs.partitions import daily_partitions, single_run
from llm_monitoring.defs.resources import DatabaseResource, database_kind
from llm_monitoring.recompute import reevaluate, reprice

HISTORY_GROUP = "history"


class RepriceConfig(dg.Config):
    refresh_prices: bool = Field(
        default=False,
        description="Fetch the latest genai-prices data before pricing (needs network; a failure is reported and the installed prices are used).",
    )
    price_update_url: str | None = Field(default=None, description="Where to fetch price data from (default: genai-prices' own URL).")


@dg.asset(
    key=keys.LOG_COSTS,
    deps=[keys.LLM_LOGS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=HISTORY_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "Costs of the runs of each day (input_cost, output_cost, total_cost, pricing_status, price_data_version "
        "in llm_logs), recomputed with the price file (PRICES_FILE) and the installed genai-prices. Materialize a range "
        "to re-price history, for example after editing the price file."
    ),
)
def log_costs(context: dg.AssetExecutionContext, config: RepriceConfig, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as db:
        try:
            report = reprice(db, window.start, window.end, refresh_prices=config.refresh_prices, update_url=config.price_update_url)
        except InvalidSetting as error:  # a price file that cannot be used: one line, no retry
            raise dg.Failure(description=str(error), allow_retries=False) from None
    context.log.info(f"{window_label(window.start, window.end)}: {report.line()}")
    by_model = [
        {
            "model": model,
            "runs": change.runs,
            "changed": change.changed,
            "cost_before": change.cost_before,
            "cost_after": change.cost_after,
            "delta": change.cost_after - change.cost_before,
        }
        for model, change in sorted(report.by_model.items(), key=lambda item: -abs(item[1].cost_after - item[1].cost_before))
    ]
    return dg.MaterializeResult(
        metadata={
            "window": window_label(window.start, window.end),
            "runs": report.runs,
            "rows_updated": report.rows_updated,
            "runs_with_new_cost": report.cost_changed,
            "newly_priced": report.newly_priced,
            "newly_unpriced": report.newly_unpriced,
            "cost_before_usd": float(report.cost_before),
            "cost_after_usd": float(report.cost_after),
            "cost_delta_usd": float(report.cost_delta),
            "price_data_version": report.price_data_version,
            "price_refresh": report.price_refresh,
            "prices_file": report.prices_file,
            "runs_priced_from_file": report.priced_from_file,
            "by_model": dg.MetadataValue.md(markdown_table(by_model, ("model", "runs", "changed", "cost_before", "cost_after", "delta"))),
        }
    )


class ReevaluateConfig(dg.Config):
    keep_other_versions: bool = Field(
        default=True,
        description=(
            "Keep the rows other rule versions wrote for these runs (to compare versions); False deletes them. "
            "LLM judges' rows (judge_verdicts) are kept either way."
        ),
    )


@dg.asset(
    key=keys.LOG_EVALUATIONS,
    deps=[keys.EVAL_CHECKS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=HISTORY_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "The current evaluator version's check rows (eval_checks) for the runs of each day, recomputed from the "
        "stored raw logs. Materialize a range after a rule change to re-evaluate history; earlier versions' rows are kept."
    ),
)
def log_evaluations(context: dg.AssetExecutionContext, config: ReevaluateConfig, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as db:
        report = reevaluate(db, window.start, window.end, keep_other_versions=config.keep_other_versions)
    context.log.info(f"{window_label(window.start, window.end)}: {report.line()}")
    for problem in report.problems[:20]:
        context.log.warning(f"not re-evaluated: {problem}")
    outcome = report.outcome
    return dg.MaterializeResult(
        metadata={
            "window": window_label(window.start, window.end),
            "evaluator_version": report.evaluator_version,
            "runs": outcome.runs,
            "runs_evaluated": outcome.evaluated,
            "runs_skipped": outcome.skipped,
            "rows_deleted": outcome.rows_deleted,
            "rows_inserted": outcome.rows_inserted,
            "verdicts_changed": outcome.verdicts_changed,
            "other_version_rows_kept": outcome.other_version_rows,
            "pass_rates": dg.MetadataValue.md(markdown_table(report.pass_rates(), ("check_name", "applicable", "passed", "pass_rate"))),
        }
    )
