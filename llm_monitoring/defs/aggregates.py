"""Daily aggregates (daily_usage, daily_eval_summary, daily_feedback): the partitioned assets, the refresh
an ingest run does for the days it stored, and the sensor that covers everything else.

Freshness: the ingest run itself rebuilds daily_usage and daily_eval_summary for exactly the days of
the runs it stored and records each day as a materialization of that partition (see
`refresh_days_of_new_runs`), then evaluates the gates in the same run. A separate aggregates run per
ingest cost a run launch, a sensor interval and, for a backlog spread over months, one run per
stretch of days or one run over a long range, whose per-partition events alone took tens of
seconds on SQLite.

Why a sensor rather than an automation condition for the rest: llm_logs is one unpartitioned asset,
written by many ingest runs, while the aggregates are partitioned by the runs' day. To Dagster every
ingest makes *all* daily partitions stale, and `AutomationCondition.eager()` would only refresh the
latest day; yet an ingest of a backlog touches old days.
"""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
import sqlalchemy as sa

from llm_monitoring.core.aggregates import markdown_table
from llm_monitoring.core.windows import days_label, stretches
from llm_monitoring.core.wording import plural
from llm_monitoring.database_url import mask_url
from llm_monitoring.defs.checks import GATES_JOB_NAME, gates_run_config, quality_gates_job
from llm_monitoring.defs.history import window_label
from llm_monitoring.defs.partitions import PARTITIONS_NOTE, daily_partitions, single_run
from llm_monitoring.defs.resources import DatabaseResource, database_kind, database_key
from llm_monitoring.recompute import (
    DailyRebuild,
    rebuild_daily_eval_summary,
    rebuild_daily_feedback,
    rebuild_daily_usage,
    rebuild_run_days,
)
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.feedback import feedback_changes_since
from llm_monitoring.storage.runs import run_day_span, run_days_in_id_ranges

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


DATABASE_KEY = "database_key"  # metadata naming the database a materialization wrote to (see database_key)
REBUILT_BY = "rebuilt_by"  # metadata of the days an ingest run rebuilt; its gates ran in that run
INGEST = "ingest"


def _rebuild_metadata(rebuild: DailyRebuild, window: dg.TimeWindow, database: DatabaseResource) -> dict[str, object]:
    return {
        DATABASE_KEY: database.key(),
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
        "left out of the rate. Versions side by side compare old and new rules. " + PARTITIONS_NOTE
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
            **_rebuild_metadata(rebuild, window, database),
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


daily_aggregates_job = dg.define_asset_job(
    AGGREGATES_JOB_NAME,
    # No gates in these partitioned runs: a run over a range would show a SKIPPED evaluation per
    # partition. The sensor requests quality_gates_job for the rebuilt days afterwards.
    selection=dg.AssetSelection.assets("daily_usage", "daily_eval_summary", "daily_feedback").without_checks(),
    description=(
        "Rebuild the daily aggregates of some days; requested by daily_aggregates_sensor (feedback changes, days an ingest "
        "could not refresh, the first catch-up) or backfilled by hand after loading runs outside the ingest."
    ),
    tags={"llm_monitoring/kind": "aggregates"},
    executor_def=dg.in_process_executor,
)


# ---------------------------------------------------------------------------- the ingest's refresh


def partition_days(days: set[date], now: datetime) -> tuple[set[date], set[date]]:
    """Split days into those that are partitions and those outside (before the start date, or in the future)."""
    first = daily_partitions.start.date()
    last = (now.astimezone(timezone.utc) + timedelta(days=daily_partitions.end_offset - 1)).date()
    inside = {day for day in days if first <= day <= last}
    return inside, days - inside


def _day_metadata(table: str, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {DATABASE_KEY: key, REBUILT_BY: INGEST, "rows": len(rows)}
    if table == "daily_usage":
        metadata |= {
            "runs": sum(row["runs"] for row in rows),
            "unpriced_runs": sum(row["unpriced_runs"] for row in rows),
            "total_cost_usd": float(sum((row["total_cost"] for row in rows), start=0)),
        }
    else:
        metadata["verdicts"] = sum(row["applicable"] for row in rows)
    return metadata


def refresh_days_of_new_runs(context: dg.AssetExecutionContext, monitoring_db: Database, stored_ids: list[int]) -> dict[str, Any]:
    """Rebuild daily_usage and daily_eval_summary for the days of the runs an ingest stored, and record each
    day as a materialization of its partition; returns metadata for llm_logs.

    A failure here does not fail the ingest, whose runs are committed: the metadata says
    `aggregates_refreshed: False` and daily_aggregates_sensor rebuilds those days instead.
    """
    key = database_key(monitoring_db.url)
    if not stored_ids:
        return {DATABASE_KEY: key, "aggregates_refreshed": True, "aggregated_days": 0}
    try:
        days, outside = partition_days(run_days_in_id_ranges(monitoring_db, [(stored_ids[0], stored_ids[-1])]), datetime.now(timezone.utc))
        rebuilt = rebuild_run_days(monitoring_db, days)
    except (DatabaseUnavailable, sa.exc.SQLAlchemyError) as error:
        reason = mask_url(str(getattr(error, "orig", error) or error)).strip().splitlines()[0]
        context.log.warning(f"daily aggregates of the stored runs not refreshed ({reason}); {SENSOR_NAME} will rebuild them")
        return {DATABASE_KEY: key, "aggregates_refreshed": False, "aggregates_error": reason}
    for table, rebuilds in rebuilt.items():
        for rebuild in rebuilds:
            rows_by_day: dict[date, list[dict[str, Any]]] = {}
            for row in rebuild.rows:
                rows_by_day.setdefault(row["day"], []).append(row)
            for offset in range(rebuild.days):
                day = rebuild.first_day + timedelta(days=offset)
                metadata = _day_metadata(table, rows_by_day.get(day, []), key)
                context.log_event(dg.AssetMaterialization(asset_key=table, partition=day.isoformat(), metadata=metadata))
    if outside:
        context.log.warning(_outside_warning(outside))
    return {DATABASE_KEY: key, "aggregates_refreshed": True, "aggregated_days": len(days), "days": days_label(days)}


def _outside_warning(days: set[date]) -> str:
    return (
        f"{plural(len(days), 'day')} outside the partitions ({daily_partitions.start:%Y-%m-%d} to today, HISTORY_START_DATE) "
        f"not aggregated: {days_label(days)}"
    )


# ---------------------------------------------------------------------------- the sensor

MAX_INGESTS_PER_TICK = 100
MAX_EVENTS_PER_TICK = 1000  # materializations of a daily table read per tick (a backfill writes one per day)
# Days closer than this are rebuilt in one run: an empty day costs nothing, a run costs seconds.
MERGE_GAP_DAYS = 7

RUN_AGGREGATES = [dg.AssetKey("daily_usage"), dg.AssetKey("daily_eval_summary")]


@dataclass(frozen=True)
class AggregatesCursor:
    storage_id: int | None = None  # last llm_logs materialization handled; None before the first tick
    feedback_at: str | None = None  # latest feedback change handled (ISO)
    rebuilt: dict[str, int] = field(default_factory=dict)  # last daily_usage / daily_eval_summary materialization handled

    @classmethod
    def parse(cls, text: str | None) -> "AggregatesCursor":
        if not text:
            return cls()
        values = json.loads(text)
        return cls(values.get("storage_id"), values.get("feedback_at"), values.get("rebuilt") or {})

    def dump(self) -> str:
        return json.dumps({"storage_id": self.storage_id, "feedback_at": self.feedback_at, "rebuilt": self.rebuilt})


def day_ranges(days: set[date], merge_gap_days: int = MERGE_GAP_DAYS) -> list[tuple[date, date]]:
    """Sorted days -> inclusive (first, last) stretches; days at most `merge_gap_days` apart share a stretch."""
    return stretches(days, merge_gap_days)


def range_request(run_key: str, first: date, last: date, assets: list[dg.AssetKey]) -> dg.RunRequest:
    tags = {"llm_monitoring/trigger": SENSOR_NAME}
    common = {"run_key": run_key, "job_name": AGGREGATES_JOB_NAME, "asset_selection": assets, "asset_check_keys": []}
    if first == last:
        return dg.RunRequest(**common, partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(**common, tags=tags | {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()})


def _metadata_value(materialization: dg.AssetMaterialization | None, key: str) -> object:
    entry = materialization.metadata.get(key) if materialization else None
    return entry.value if entry is not None else None


def _ours(record: dg.EventLogRecord, key: str) -> bool:
    """Written to this sensor's database (materializations from before the key was recorded count as ours)."""
    recorded = _metadata_value(record.asset_materialization, DATABASE_KEY)
    return recorded is None or recorded == key


def _ingested_days(database: Database, records: list[dg.EventLogRecord]) -> set[date]:
    """Run days of the rows the ingests stored, from the id range each reports: exact, whatever the
    clocks, and one query for the whole tick."""
    ranges = []
    for record in records:
        materialization = record.asset_materialization
        first_id, last_id = _metadata_value(materialization, "first_new_id"), _metadata_value(materialization, "last_new_id")
        if isinstance(first_id, int) and isinstance(last_id, int):  # None when the ingest stored nothing
            ranges.append((first_id, last_id))
    return run_days_in_id_ranges(database, ranges)


def _new_records(
    instance: dg.DagsterInstance, asset: dg.AssetKey, after: int | None, limit: int = MAX_EVENTS_PER_TICK
) -> list[dg.EventLogRecord]:
    return list(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset, after_storage_id=after), limit=limit, ascending=True).records
    )


def _days_to_judge(instance: dg.DagsterInstance, key: str, seen: dict[str, int]) -> tuple[dict[str, int], set[date]]:
    """Days of this database's daily_usage / daily_eval_summary rebuilt by runs other than ingests (backfills,
    this sensor's runs), whose gates did not run with them; and the cursor past them."""
    if not seen:  # first tick: start from now, the history was judged when it was written
        latest = {asset.to_user_string(): instance.fetch_materializations(asset, limit=1).records for asset in RUN_AGGREGATES}
        return {name: records[0].storage_id if records else 0 for name, records in latest.items()}, set()
    days: set[date] = set()
    cursor = dict(seen)
    for asset in RUN_AGGREGATES:
        records = _new_records(instance, asset, seen.get(asset.to_user_string(), 0))
        if records:
            cursor[asset.to_user_string()] = records[-1].storage_id
        for record in records:
            partition = record.partition_key
            if partition and _ours(record, key) and _metadata_value(record.asset_materialization, REBUILT_BY) != INGEST:
                days.add(date.fromisoformat(partition))
    return cursor, days


@dg.sensor(
    name=SENSOR_NAME,
    jobs=[daily_aggregates_job, quality_gates_job],
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the daily aggregates and gates current where the ingest run does not: daily_feedback for the days of new, "
        "edited or deleted feedback; daily_usage and daily_eval_summary for days an ingest could not refresh (and every "
        "day with runs on its first tick); quality_gates_job for days a backfill rebuilt. Acts only on its own database."
    ),
)
def daily_aggregates_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    cursor = AggregatesCursor.parse(context.cursor)
    now = datetime.now(timezone.utc)
    instance = context.instance
    key = database.key()
    try:
        with database.open() as monitoring_db:
            if cursor.storage_id is None:
                # First tick: catch up on every day that already has runs, then follow new ingests.
                latest = instance.fetch_materializations(dg.AssetKey("llm_logs"), limit=1).records
                storage_id = latest[0].storage_id if latest else 0
                span = run_day_span(monitoring_db)
                log_days = {span[0] + timedelta(days=n) for n in range((span[1] - span[0]).days + 1)} if span else set()
                ingests = 0
            else:
                records = _new_records(instance, dg.AssetKey("llm_logs"), cursor.storage_id, MAX_INGESTS_PER_TICK)
                ingests = sum(1 for record in records if _ours(record, key))
                storage_id = records[-1].storage_id if records else cursor.storage_id
                # An ingest rebuilds its days itself; only those it could not (or an older version's) are left.
                stale = [
                    record for record in records
                    if _ours(record, key) and _metadata_value(record.asset_materialization, "aggregates_refreshed") is not True
                ]
                log_days = _ingested_days(monitoring_db, stale)
            since = datetime.fromisoformat(cursor.feedback_at) if cursor.feedback_at else None
            feedback_days, feedback_at = feedback_changes_since(monitoring_db, since)
    except DatabaseUnavailable as error:
        return dg.SkipReason(f"monitoring database unavailable, will retry: {error}")
    rebuilt, judge_days = _days_to_judge(instance, key, cursor.rebuilt)

    log_days, outside = partition_days(log_days, now)
    feedback_days, feedback_outside = partition_days(feedback_days, now)
    requests = [range_request(f"logs:{storage_id}:{first}:{last}", first, last, RUN_AGGREGATES) for first, last in day_ranges(log_days)]
    feedback_mark = feedback_at.isoformat() if feedback_at else None
    requests += [
        range_request(f"feedback:{feedback_mark}:{first}:{last}", first, last, [dg.AssetKey("daily_feedback")])
        for first, last in day_ranges(feedback_days)
    ]
    if judge_days:
        requests.append(dg.RunRequest(
            run_key=f"gates:{rebuilt.get('daily_usage')}:{rebuilt.get('daily_eval_summary')}",
            job_name=GATES_JOB_NAME,
            run_config=gates_run_config(judge_days),
            tags={"llm_monitoring/trigger": SENSOR_NAME, "llm_monitoring/judged_days": days_label(judge_days, limit=6)},
        ))
    new_cursor = AggregatesCursor(storage_id, feedback_mark or cursor.feedback_at, rebuilt).dump()
    if outside | feedback_outside:
        context.log.warning(_outside_warning(outside | feedback_outside))
    if not requests:
        return dg.SensorResult(
            skip_reason=(
                f"nothing to rebuild or judge: {plural(ingests, 'new ingest')} into this database "
                "(an ingest rebuilds and judges its own days), no feedback change, no backfill"
            ),
            cursor=new_cursor,
        )
    context.log.info(
        f"rebuilding {plural(len(log_days), 'day')} of runs and {plural(len(feedback_days), 'day')} of feedback; "
        f"judging {plural(len(judge_days), 'rebuilt day')}: {plural(len(requests), 'run')}"
    )
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
