"""The daily aggregates (daily_usage, daily_eval_summary, daily_feedback), partitioned by UTC run day.

Freshness: the ingest run itself rebuilds daily_usage and daily_eval_summary for exactly the days of
the runs it stored (aggregates/refresh.py); daily_aggregates_sensor (aggregates/sensors.py) covers
everything else: feedback, days an ingest could not refresh, the first catch-up.
"""

import dagster as dg

from llm_monitoring.core.windows import window_label
from llm_monitoring.defs import keys
from llm_monitoring.defs.metadata import markdown_table
from llm_monitoring.defs.partitions import PARTITIONS_NOTE, daily_partitions, single_run
from llm_monitoring.defs.resources import DatabaseResource, database_kind
from llm_monitoring.recompute import DailyRebuild, rebuild_daily_eval_summary, rebuild_daily_feedback, rebuild_daily_usage

AGGREGATES_GROUP = "aggregates"

feedback = dg.AssetSpec(
    keys.FEEDBACK,
    description="Reviewers' good/bad verdicts on runs (table feedback), written by the review app and the API; not materialized by Dagster.",
    group_name="feedback",
    kinds={database_kind(), "table"},
)


def _rebuild_metadata(rebuild: DailyRebuild, window: dg.TimeWindow, database: DatabaseResource) -> dict[str, object]:
    return {
        keys.DATABASE_KEY: database.key(),
        "window": window_label(window.start, window.end),
        "days": rebuild.days,
        "days_with_rows": len({row["day"] for row in rebuild.rows}),
        "rows": len(rebuild.rows),
        "rows_replaced": rebuild.deleted,
    }


@dg.asset(
    key=keys.DAILY_USAGE,
    deps=[keys.LLM_LOGS, keys.LOG_COSTS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "Runs, tokens (input, output, cache read/write), cost and p50/p95 duration by UTC day x provider x model x agent "
        "(table daily_usage). Unpriced runs are counted, never costed at $0. " + PARTITIONS_NOTE
    ),
)
def daily_usage(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as monitoring_db:
        rebuild = rebuild_daily_usage(monitoring_db, window.start, window.end)
    rows = rebuild.rows
    top = sorted(rows, key=lambda row: row["total_cost"], reverse=True)
    return dg.MaterializeResult(
        metadata={
            **_rebuild_metadata(rebuild, window, database),
            "runs": sum(row["runs"] for row in rows),
            "unpriced_runs": sum(row["unpriced_runs"] for row in rows),
            "total_cost_usd": float(sum((row["total_cost"] for row in rows), start=0)),
            "input_tokens": sum(row["input_tokens"] for row in rows),
            "output_tokens": sum(row["output_tokens"] for row in rows),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    top, ("day", "provider", "model", "agent_name", "runs", "unpriced_runs", "total_cost", "duration_p95_seconds")
                )
            ),
        }
    )


@dg.asset(
    key=keys.DAILY_EVAL_SUMMARY,
    deps=[keys.EVAL_CHECKS, keys.LOG_EVALUATIONS, keys.JUDGE_VERDICTS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "Pass rate by UTC day x check x evaluator version (table daily_eval_summary), rule checks and LLM judges "
        "(versions judge:<name>:<hash>, with their calls' tokens and cost); 'not applicable' verdicts are left out of the "
        "rate. Versions side by side compare old and new rules or rubrics. Also writes table daily_eval_breakdown, the same "
        "counts by provider, model and agent (the Eval dashboard's filters). " + PARTITIONS_NOTE
    ),
)
def daily_eval_summary(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as monitoring_db:
        rebuild = rebuild_daily_eval_summary(monitoring_db, window.start, window.end)
    overall: dict[tuple[str, str], list[int]] = {}
    for row in rebuild.rows:
        entry = overall.setdefault((row["check_name"], row["evaluator_version"]), [0, 0])
        entry[0] += row["passed"]
        entry[1] += row["applicable"]
    preview = [
        {
            "check_name": name,
            "evaluator_version": version,
            "passed": passed,
            "applicable": applicable,
            "pass_rate": round(passed / applicable, 4) if applicable else None,
        }
        for (name, version), (passed, applicable) in sorted(overall.items())
    ]
    return dg.MaterializeResult(
        metadata={
            **_rebuild_metadata(rebuild, window, database),
            "verdicts": sum(row["applicable"] for row in rebuild.rows),
            "preview": dg.MetadataValue.md(
                markdown_table(preview, ("check_name", "evaluator_version", "passed", "applicable", "pass_rate"), limit=30)
            ),
        }
    )


@dg.asset(
    key=keys.DAILY_FEEDBACK,
    deps=[feedback],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description="Good and bad feedback counts and good % by UTC day of the runs they judge (table daily_feedback). " + PARTITIONS_NOTE,
)
def daily_feedback(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as monitoring_db:
        rebuild = rebuild_daily_feedback(monitoring_db, window.start, window.end)
    good = sum(row["good"] for row in rebuild.rows)
    total = sum(row["feedback"] for row in rebuild.rows)
    return dg.MaterializeResult(
        metadata={
            **_rebuild_metadata(rebuild, window, database),
            "feedback": total,
            "good": good,
            "good_pct": round(100 * good / total, 2) if total else None,
            "preview": dg.MetadataValue.md(markdown_table(rebuild.rows, ("day", "feedback", "good", "bad", "good_pct"))),
        }
    )
