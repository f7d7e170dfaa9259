"""judge_new_runs_sensor: judges with `on_ingest: true` judge the runs each ingest stored.

It follows llm_logs materializations (each says the id range its ingest stored) and requests one
judge run per stretch of run days, restricted to those ids: the new runs, not the rest of their
days. A run is never judged twice by one version, so a repeated request costs no call.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from llm_monitoring.core.judges import JudgeConfigError
from llm_monitoring.core.windows import days_label, stretches
from llm_monitoring.core.wording import plural
from llm_monitoring.defs import keys
from llm_monitoring.defs.aggregates.refresh import outside_warning, partition_days
from llm_monitoring.defs.judges import jobs
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.judging import load_judges
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.runs import run_days_in_id_ranges

MAX_INGESTS_PER_TICK = 100
MERGE_GAP_DAYS = 7  # days closer than this share one run: an empty day costs nothing, a run costs seconds


@dataclass(frozen=True)
class JudgeCursor:
    storage_id: int | None = None  # last llm_logs materialization handled; None before the first tick

    @classmethod
    def parse(cls, text: str | None) -> "JudgeCursor":
        return cls(json.loads(text).get("storage_id")) if text else cls()

    def dump(self) -> str:
        return json.dumps({"storage_id": self.storage_id})


def _value(record: dg.EventLogRecord, key: str) -> object:
    materialization = record.asset_materialization
    entry = materialization.metadata.get(key) if materialization else None
    return entry.value if entry is not None else None


@dg.sensor(
    name=keys.JUDGE_SENSOR,
    job=jobs.judge_runs_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Judges the runs each ingest stored with the judges of JUDGES_FILE that say on_ingest: true (one judge_runs_job "
        "run per stretch of days, restricted to the new runs' ids). Without such judges it only moves its cursor."
    ),
)
def judge_new_runs_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    cursor = JudgeCursor.parse(context.cursor)
    instance = context.instance
    if cursor.storage_id is None:
        # First tick: from now on. History is judged on purpose (a backfill, `llm-monitoring judge run`), never by surprise.
        latest = instance.fetch_materializations(keys.LLM_LOGS, limit=1).records
        return dg.SensorResult(
            skip_reason="started: judging the runs of ingests from now on", cursor=JudgeCursor(latest[0].storage_id if latest else 0).dump()
        )
    try:
        judges = [judge.name for judge in load_judges() if judge.on_ingest]
    except JudgeConfigError as error:
        # The cursor stays: the new runs are judged once the file is fixed.
        return dg.SkipReason(f"judges file unusable, new runs wait: {error}")
    records = list(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.LLM_LOGS, after_storage_id=cursor.storage_id), limit=MAX_INGESTS_PER_TICK, ascending=True
        ).records
    )
    if not records:
        return dg.SkipReason("no new ingest")
    new_cursor = JudgeCursor(records[-1].storage_id).dump()
    if not judges:
        return dg.SensorResult(skip_reason=f"no judge says on_ingest: {plural(len(records), 'ingest')} not judged", cursor=new_cursor)
    key = database.key()
    ranges = []
    for record in records:
        first, last, database_key = _value(record, keys.FIRST_NEW_ID), _value(record, keys.LAST_NEW_ID), _value(record, keys.DATABASE_KEY)
        if isinstance(first, int) and isinstance(last, int) and database_key in (None, key):
            ranges.append((first, last))
    try:
        with database.open() as monitoring_db:
            days = run_days_in_id_ranges(monitoring_db, ranges)
    except DatabaseUnavailable as error:
        return dg.SkipReason(f"monitoring database unavailable, will retry: {error}")
    days, outside = partition_days(days, datetime.now(UTC))
    if outside:
        context.log.warning(outside_warning(outside))
    requests = []
    for first, last in stretches(days, MERGE_GAP_DAYS):
        tags = {keys.TRIGGER_TAG: keys.JUDGE_SENSOR}
        if first == last:
            partition = {"partition_key": first.isoformat()}
        else:
            partition = {}
            tags |= {keys.RANGE_START_TAG: first.isoformat(), keys.RANGE_END_TAG: last.isoformat()}
        requests.append(
            dg.RunRequest(
                run_key=f"judge:{records[-1].storage_id}:{first}:{last}",
                job_name=keys.JUDGE_JOB,
                run_config=keys.judge_run_config(judges, ranges),
                tags=tags,
                **partition,
            )
        )
    if not requests:
        return dg.SensorResult(skip_reason=f"{plural(len(records), 'ingest')} stored no run in a partition", cursor=new_cursor)
    context.log.info(f"judging the new runs of {days_label(days)} with {', '.join(judges)}")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
