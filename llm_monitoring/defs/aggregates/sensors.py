"""daily_aggregates_sensor: keeps the daily aggregates and gates current where the ingest run does not.

Why a sensor rather than an automation condition: llm_logs is one unpartitioned asset, written by
many ingest runs, while the aggregates are partitioned by the runs' day. To Dagster every ingest
makes *all* daily partitions stale, and `AutomationCondition.eager()` would only refresh the latest
day; yet an ingest of a backlog touches old days.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from llm_monitoring.core.windows import days_label, stretches
from llm_monitoring.core.wording import plural
from llm_monitoring.defs import keys
from llm_monitoring.defs.aggregates import jobs
from llm_monitoring.defs.aggregates.refresh import outside_warning, partition_days
from llm_monitoring.defs.quality import jobs as quality_jobs
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.feedback import feedback_changes_since
from llm_monitoring.storage.runs import run_day_span, run_days_in_id_ranges

MAX_INGESTS_PER_TICK = 100
MAX_EVENTS_PER_TICK = 1000  # materializations of a daily table read per tick (a backfill writes one per day)
# Days closer than this are rebuilt in one run: an empty day costs nothing, a run costs seconds.
MERGE_GAP_DAYS = 7

RUN_AGGREGATES = list(keys.RUN_AGGREGATES)


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
    tags = {keys.TRIGGER_TAG: keys.AGGREGATES_SENSOR}
    common = {"run_key": run_key, "job_name": keys.AGGREGATES_JOB, "asset_selection": assets, "asset_check_keys": []}
    if first == last:
        return dg.RunRequest(**common, partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(**common, tags=tags | {keys.RANGE_START_TAG: first.isoformat(), keys.RANGE_END_TAG: last.isoformat()})


def _metadata_value(materialization: dg.AssetMaterialization | None, key: str) -> object:
    entry = materialization.metadata.get(key) if materialization else None
    return entry.value if entry is not None else None


def _ours(record: dg.EventLogRecord, key: str) -> bool:
    """Written to this sensor's database (materializations from before the key was recorded count as ours)."""
    recorded = _metadata_value(record.asset_materialization, keys.DATABASE_KEY)
    return recorded is None or recorded == key


def _ingested_days(database: Database, records: list[dg.EventLogRecord]) -> set[date]:
    """Run days of the rows the ingests stored, from the id range each reports: exact, whatever the
    clocks, and one query for the whole tick."""
    ranges = []
    for record in records:
        materialization = record.asset_materialization
        first_id, last_id = _metadata_value(materialization, keys.FIRST_NEW_ID), _metadata_value(materialization, keys.LAST_NEW_ID)
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
            if (
                partition
                and _ours(record, key)
                and _metadata_value(record.asset_materialization, keys.REBUILT_BY) != keys.REBUILT_BY_INGEST
            ):
                days.add(date.fromisoformat(partition))
    return cursor, days


@dg.sensor(
    name=keys.AGGREGATES_SENSOR,
    jobs=[jobs.daily_aggregates_job, quality_jobs.quality_gates_job],
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
    now = datetime.now(UTC)
    instance = context.instance
    key = database.key()
    try:
        with database.open() as monitoring_db:
            if cursor.storage_id is None:
                # First tick: catch up on every day that already has runs, then follow new ingests.
                latest = instance.fetch_materializations(keys.LLM_LOGS, limit=1).records
                storage_id = latest[0].storage_id if latest else 0
                span = run_day_span(monitoring_db)
                log_days = {span[0] + timedelta(days=n) for n in range((span[1] - span[0]).days + 1)} if span else set()
                ingests = 0
            else:
                records = _new_records(instance, keys.LLM_LOGS, cursor.storage_id, MAX_INGESTS_PER_TICK)
                ingests = sum(1 for record in records if _ours(record, key))
                storage_id = records[-1].storage_id if records else cursor.storage_id
                # An ingest rebuilds its days itself; only those it could not (or an older version's) are left.
                stale = [
                    record
                    for record in records
                    if _ours(record, key) and _metadata_value(record.asset_materialization, keys.AGGREGATES_REFRESHED) is not True
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
        range_request(f"feedback:{feedback_mark}:{first}:{last}", first, last, [keys.DAILY_FEEDBACK])
        for first, last in day_ranges(feedback_days)
    ]
    if judge_days:
        requests.append(
            dg.RunRequest(
                run_key=f"gates:{rebuilt.get(keys.DAILY_USAGE.to_user_string())}:{rebuilt.get(keys.DAILY_EVAL_SUMMARY.to_user_string())}",
                job_name=keys.GATES_JOB,
                run_config=quality_jobs.gates_run_config(judge_days),
                tags={keys.TRIGGER_TAG: keys.AGGREGATES_SENSOR, keys.JUDGED_DAYS_TAG: days_label(judge_days, limit=6)},
            )
        )
    new_cursor = AggregatesCursor(storage_id, feedback_mark or cursor.feedback_at, rebuilt).dump()
    if outside | feedback_outside:
        context.log.warning(outside_warning(outside | feedback_outside))
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
