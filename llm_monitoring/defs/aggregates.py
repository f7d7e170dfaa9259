"""Daily aggregates (daily_usage, daily_eval_summary, daily_feedback) and the sensor that keeps them current.

Why a sensor rather than an automation condition: llm_logs is one unpartitioned asset, written by
many ingest runs, while the aggregates are partitioned by the runs' day. To Dagster every ingest
makes *all* daily partitions stale, and `AutomationCondition.eager()` would only refresh the latest
day; yet an ingest of a backlog touches old days. The sensor asks the database which days the new
rows of each ingest belong to and requests just those days, one run per stretch of days.
"""

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import dagster as dg

from llm_monitoring import db
from llm_monitoring.core.aggregates import markdown_table
from llm_monitoring.db import DatabaseUnavailable
from llm_monitoring.defs.checks import EVAL_SUMMARY_CHECK_KEYS, PARSE_FAILURES_CHECK_KEY, USAGE_CHECK_KEYS
from llm_monitoring.defs.history import window_label
from llm_monitoring.defs.partitions import daily_partitions, single_run
from llm_monitoring.defs.resources import DatabaseResource, database_kind
from llm_monitoring.recompute import DailyRebuild, rebuild_daily_eval_summary, rebuild_daily_feedback, rebuild_daily_usage

AGGREGATES_GROUP = "aggregates"
AGGREGATES_JOB_NAME = "daily_aggregates_job"
SENSOR_NAME = "daily_aggregates_sensor"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

feedback = dg.AssetSpec(
    "feedback",
    description="Reviewers' good/bad verdicts on runs (table feedback), written by the review app and the API; not materialized by Dagster.",
    group_name="feedback",
    kinds={database_kind(), "table"},
)


def _rebuild_metadata(rebuild: DailyRebuild, window: dg.TimeWindow) -> dict[str, object]:
    return {
        "window": window_label(window.start, window.end),
        "days": rebuild.days,
        "days_with_rows": len({row["day"] for row in rebuild.rows}),
        "rows": len(rebuild.rows),
        "rows_replaced": rebuild.deleted,
    }


@dg.asset(
    name="daily_usage",
    deps=["llm_logs", "log_costs"],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "Runs, tokens (input, output, cache read/write), cost and p50/p95 duration by UTC day x provider x model x agent "
        "(table daily_usage). Unpriced runs are counted, never costed at $0."
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
            **_rebuild_metadata(rebuild, window),
            "runs": sum(row["runs"] for row in rows),
            "unpriced_runs": sum(row["unpriced_runs"] for row in rows),
            "total_cost_usd": float(sum((row["total_cost"] for row in rows), start=0)),
            "input_tokens": sum(row["input_tokens"] for row in rows),
            "output_tokens": sum(row["output_tokens"] for row in rows),
            "preview": dg.MetadataValue.md(
                markdown_table(top, ("day", "provider", "model", "agent_name", "runs", "unpriced_runs", "total_cost", "duration_p95_seconds"))
            ),
        }
    )


@dg.asset(
    name="daily_eval_summary",
    deps=["eval_checks", "log_evaluations"],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description=(
        "Pass rate by UTC day x check x evaluator version (table daily_eval_summary); 'not applicable' verdicts are "
        "left out of the rate. Versions side by side compare old and new rules."
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
        {"check_name": name, "evaluator_version": version, "passed": passed, "applicable": applicable,
         "pass_rate": round(passed / applicable, 4) if applicable else None}
        for (name, version), (passed, applicable) in sorted(overall.items())
    ]
    return dg.MaterializeResult(
        metadata={
            **_rebuild_metadata(rebuild, window),
            "verdicts": sum(row["applicable"] for row in rebuild.rows),
            "preview": dg.MetadataValue.md(markdown_table(preview, ("check_name", "evaluator_version", "passed", "applicable", "pass_rate"), limit=30)),
        }
    )


@dg.asset(
    name="daily_feedback",
    deps=[feedback],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=AGGREGATES_GROUP,
    kinds={database_kind(), "table"},
    description="Good and bad feedback counts and good % by UTC day of the runs they judge (table daily_feedback).",
)
def daily_feedback(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    with database.open_for_step() as monitoring_db:
        rebuild = rebuild_daily_feedback(monitoring_db, window.start, window.end)
    good = sum(row["good"] for row in rebuild.rows)
    total = sum(row["feedback"] for row in rebuild.rows)
    return dg.MaterializeResult(
        metadata={
            **_rebuild_metadata(rebuild, window),
            "feedback": total,
            "good": good,
            "good_pct": round(100 * good / total, 2) if total else None,
            "preview": dg.MetadataValue.md(markdown_table(rebuild.rows, ("day", "feedback", "good", "bad", "good_pct"))),
        }
    )


daily_aggregates_job = dg.define_asset_job(
    AGGREGATES_JOB_NAME,
    selection=dg.AssetSelection.assets("daily_usage", "daily_eval_summary", "daily_feedback")
    | dg.AssetSelection.checks(PARSE_FAILURES_CHECK_KEY),
    description="Rebuild the daily aggregates of some days and run their quality checks; requested by daily_aggregates_sensor.",
    tags={"llm_monitoring/kind": "aggregates"},
)


# ---------------------------------------------------------------------------- the sensor

MAX_MATERIALIZATIONS_PER_TICK = 100
# Days closer than this are rebuilt in one run: an empty day costs nothing, a run costs seconds.
MERGE_GAP_DAYS = 7

LOG_AGGREGATES = [dg.AssetKey("daily_usage"), dg.AssetKey("daily_eval_summary")]
LOG_CHECKS = [*USAGE_CHECK_KEYS, *EVAL_SUMMARY_CHECK_KEYS, PARSE_FAILURES_CHECK_KEY]


@dataclass(frozen=True)
class AggregatesCursor:
    storage_id: int | None = None  # last llm_logs materialization handled; None before the first tick
    feedback_at: str | None = None  # latest feedback change handled (ISO)

    @classmethod
    def parse(cls, text: str | None) -> "AggregatesCursor":
        if not text:
            return cls()
        values = json.loads(text)
        return cls(values.get("storage_id"), values.get("feedback_at"))

    def dump(self) -> str:
        return json.dumps({"storage_id": self.storage_id, "feedback_at": self.feedback_at})


def day_ranges(days: set[date], merge_gap_days: int = MERGE_GAP_DAYS) -> list[tuple[date, date]]:
    """Sorted days -> inclusive (first, last) stretches; days at most `merge_gap_days` apart share a stretch."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and (day - ranges[-1][1]).days <= merge_gap_days:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def partition_days(days: set[date], now: datetime) -> tuple[set[date], set[date]]:
    """Split days into those that are partitions and those outside (before the start date, or in the future)."""
    first = daily_partitions.start.date()
    last = (now.astimezone(timezone.utc) + timedelta(days=daily_partitions.end_offset - 1)).date()
    inside = {day for day in days if first <= day <= last}
    return inside, days - inside


def range_request(
    run_key: str, first: date, last: date, assets: list[dg.AssetKey], checks: list[dg.AssetCheckKey]
) -> dg.RunRequest:
    tags = {"llm_monitoring/trigger": SENSOR_NAME}
    if first == last:
        return dg.RunRequest(run_key=run_key, asset_selection=assets, asset_check_keys=checks, partition_key=first.isoformat(), tags=tags)
    tags |= {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
    return dg.RunRequest(run_key=run_key, asset_selection=assets, asset_check_keys=checks, tags=tags)


def _metadata_value(materialization: dg.AssetMaterialization | None, key: str) -> object:
    entry = materialization.metadata.get(key) if materialization else None
    return entry.value if entry is not None else None


def _ingested_days(database: db.Database, records: list[dg.EventLogRecord]) -> set[date]:
    """Run days of the rows the ingests stored, from the id range each reports: exact, whatever the
    clocks, and one query for the whole tick."""
    ranges = []
    for record in records:
        materialization = record.asset_materialization
        first_id, last_id = _metadata_value(materialization, "first_new_id"), _metadata_value(materialization, "last_new_id")
        if isinstance(first_id, int) and isinstance(last_id, int):  # None when the ingest stored nothing
            ranges.append((first_id, last_id))
    return db.run_days_in_id_ranges(database, ranges)


@dg.sensor(
    name=SENSOR_NAME,
    job=daily_aggregates_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After each ingest (a new llm_logs materialization), requests daily_usage and daily_eval_summary for the days "
        "of the runs it stored, and daily_feedback for the days of new or edited feedback; one run per stretch of days."
    ),
)
def daily_aggregates_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    cursor = AggregatesCursor.parse(context.cursor)
    now = datetime.now(timezone.utc)
    instance = context.instance
    try:
        with database.open() as monitoring_db:
            if cursor.storage_id is None:
                # First tick: catch up on every day that already has runs, then follow new ingests.
                latest = instance.fetch_materializations(dg.AssetKey("llm_logs"), limit=1).records
                storage_id = latest[0].storage_id if latest else 0
                span = db.run_day_span(monitoring_db)
                log_days = {span[0] + timedelta(days=n) for n in range((span[1] - span[0]).days + 1)} if span else set()
                ingests = len(latest)
            else:
                records = list(
                    instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=dg.AssetKey("llm_logs"), after_storage_id=cursor.storage_id),
                        limit=MAX_MATERIALIZATIONS_PER_TICK,
                        ascending=True,
                    ).records
                )
                storage_id = records[-1].storage_id if records else cursor.storage_id
                log_days = _ingested_days(monitoring_db, records)
                ingests = len(records)
            since = datetime.fromisoformat(cursor.feedback_at) if cursor.feedback_at else None
            feedback_days, feedback_at = db.feedback_changes_since(monitoring_db, since)
    except DatabaseUnavailable as error:
        return dg.SkipReason(f"monitoring database unavailable, will retry: {error}")

    log_days, outside = partition_days(log_days, now)
    feedback_days, feedback_outside = partition_days(feedback_days, now)
    requests = [
        range_request(f"logs:{storage_id}:{first}:{last}", first, last, LOG_AGGREGATES, LOG_CHECKS)
        for first, last in day_ranges(log_days)
    ]
    if ingests and not log_days and cursor.storage_id is not None:
        # An ingest that stored nothing (every file quarantined, say) still gets its parse-failure gate.
        requests.append(dg.RunRequest(run_key=f"logs:{storage_id}:checks", asset_selection=[], asset_check_keys=[PARSE_FAILURES_CHECK_KEY]))
    feedback_mark = feedback_at.isoformat() if feedback_at else None
    requests += [
        range_request(f"feedback:{feedback_mark}:{first}:{last}", first, last, [dg.AssetKey("daily_feedback")], [])
        for first, last in day_ranges(feedback_days)
    ]
    new_cursor = AggregatesCursor(storage_id, feedback_mark or cursor.feedback_at).dump()
    if outside | feedback_outside:
        context.log.warning(
            f"{len(outside | feedback_outside)} days outside the partitions ({daily_partitions.start:%Y-%m-%d} to today, "
            f"HISTORY_START_DATE) were not aggregated: {sorted(outside | feedback_outside)[:5]}"
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=f"{ingests} new llm_logs materializations and no feedback change touched a day to aggregate",
            cursor=new_cursor,
        )
    context.log.info(
        f"{ingests} new ingests touched {len(log_days)} days, feedback changed on {len(feedback_days)} days: {len(requests)} runs"
    )
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
