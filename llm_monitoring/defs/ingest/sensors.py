"""The sensor that turns new log files into ingest runs, from a local folder or a bucket.

A tick only lists and does cursor arithmetic (no parsing, no database writes), so it stays far below
Dagster's 60 s evaluation timeout even on large folders; a bucket is listed incrementally
(sources/bucket_scan.py). Files are requested in batches (many files per run). Files already handed
to a queued or running ingest run are left out, so concurrent runs never work on the same file; a
file whose run failed is requested again on a later tick, and the database's unique content hash
guards against any remaining race.
"""

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg

from llm_monitoring.config import Settings, bucket_settings, get_settings
from llm_monitoring.defs import keys
from llm_monitoring.defs.ingest import jobs
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.file_names import name_text
from llm_monitoring.ingest import pending_work
from llm_monitoring.sources import S3Source, SourceUnavailable
from llm_monitoring.sources.bucket_scan import ScanCursor, scan_bucket
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.objects import known_objects

MAX_RUNS_PER_TICK = 5
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _runs_in_flight(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(job_name=keys.INGEST_JOB, statuses=_IN_FLIGHT, tags={keys.SENSOR_NAME_TAG: keys.NEW_LOG_FILES_SENSOR})
        )
    )


def files_in_flight(instance: dg.DagsterInstance) -> set[str]:
    names: set[str] = set()
    for record in _runs_in_flight(instance):
        names.update(keys.ingest_run_files(record.dagster_run.run_config))
    return names


def files_of_failed_runs(instance: dg.DagsterInstance, since: float) -> set[str]:
    """Names in the sensor's ingest runs that failed (or were canceled) since `since` (unix time)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=keys.INGEST_JOB,
            statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
            tags={keys.SENSOR_NAME_TAG: keys.NEW_LOG_FILES_SENSOR},
            updated_after=datetime.fromtimestamp(since, UTC),
        )
    )
    names: set[str] = set()
    for record in records:
        names.update(keys.ingest_run_files(record.dagster_run.run_config))
    return names


def run_requests(names: Sequence[str], run_files: int, generation: int) -> list[dg.RunRequest]:
    """Runs of at most `run_files` names each, at most MAX_RUNS_PER_TICK; run keys unique per tick."""
    requests = []
    for start in range(0, min(len(names), run_files * MAX_RUNS_PER_TICK), run_files):
        run_config = keys.ingest_run_config(names[start : start + run_files], settled_only=True)
        texts = keys.ingest_run_files(run_config)
        digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"{generation}-{digest}",
                run_config=run_config,
                tags={keys.FILES_TAG: str(len(texts)), keys.FIRST_FILE_TAG: texts[0][:200]},
            )
        )
    return requests


@dg.sensor(
    name=keys.NEW_LOG_FILES_SENSOR,
    job=jobs.ingest_job,
    # The daemon evaluates sensors at most every 5 s; a minimum below that lets it tick on every
    # loop (with 5 it skips every other loop whose start comes a few milliseconds early).
    minimum_interval_seconds=3,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests ingest runs for new, settled log files in LOGS_DIR, many files per run.",
)
def new_log_files_sensor(context: dg.SensorEvaluationContext, log_source: LogSourceResource, database: DatabaseResource):
    settings = get_settings()
    try:
        source = log_source.get_source()
    except ValueError as error:  # LOGS_DIR unusable, or PROCESSED_DIR or QUARANTINE_DIR outside LOGS_DIR
        return dg.SkipReason(f"not listing log files: {error}")
    if isinstance(source, S3Source):
        return bucket_tick(context, source, database, settings)
    started = time.monotonic()
    try:
        with database.open(ensure_schema=False) as db:
            work = pending_work(source, db, settings)
    except DatabaseUnavailable as error:
        return dg.SkipReason(f"not listing {source.describe()}: {error}")
    pending, settled = work.files, work.ready
    busy = files_in_flight(context.instance) if settled else set()
    # Run configs hold names in their text form: any name the OS lists, valid UTF-8 or not.
    todo = [log_file.name for log_file in settled if name_text(log_file.name) not in busy]
    listing = f"listed {len(pending)} pending files in {time.monotonic() - started:.2f}s"
    try:
        generation = int(context.cursor or 0) + 1
    except ValueError:  # a bucket's cursor, LOGS_DIR having changed back to a folder
        generation = 1
    if not todo and work.quiet_traces and not _runs_in_flight(context.instance):
        # No file to read, but traces whose last spans arrived SETTLE_SECONDS ago wait to be stored:
        # any ingest run completes them at its end.
        context.log.info(f"{listing}; requesting a run to store {work.quiet_traces} traces that went quiet")
        run_config = keys.ingest_run_config([], settled_only=True)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{generation}-quiet-traces", run_config=run_config)], cursor=str(generation)
        )
    if not todo:
        waiting = len(pending) - len(settled)
        return dg.SkipReason(
            f"no new settled log files in {source.describe()}: {listing}, {waiting} still being written, "
            f"{len(busy)} in queued or running ingest runs"
        )
    requests = run_requests(todo, settings.run_files, generation)
    requested = sum(len(keys.ingest_run_files(request.run_config)) for request in requests)
    context.log.info(f"{listing}; requesting {len(requests)} runs for {requested} files")
    return dg.SensorResult(run_requests=requests, cursor=str(generation))


def bucket_tick(context: dg.SensorEvaluationContext, source: S3Source, database: DatabaseResource, settings: Settings):
    """A tick over a bucket: list from the cursor, hand back the objects of failed runs, request the rest.

    The cursor is saved on every tick that listed (the watermark and the sweep move on even when
    nothing is requested); a failed listing changes nothing, so the next tick tries again."""
    options = bucket_settings()
    checked_at = time.time()
    cursor = ScanCursor.parse(context.cursor)
    cursor = cursor.handed_back(source.key_of(name) for name in files_of_failed_runs(context.instance, cursor.checked_at))
    busy = files_in_flight(context.instance)
    started = time.monotonic()
    try:
        with database.open(ensure_schema=False) as db:
            scan = scan_bucket(
                source,
                cursor,
                known=lambda versions: known_objects(db, source.bucket, [(version.key, version.etag) for version in versions]),
                busy=busy,
                capacity=settings.run_files * MAX_RUNS_PER_TICK,
                settle_seconds=settings.settle_seconds,
                tick_seconds=options.tick_seconds,
                reconcile_seconds=options.reconcile_seconds,
            )
    except (SourceUnavailable, DatabaseUnavailable) as error:
        return dg.SkipReason(f"not listing {source.describe()}: {error}")
    line = scan.line(time.monotonic() - started)
    # Runs failed while this tick ran are handed back by the next one: look from a little before.
    next_cursor = replace(scan.cursor, checked_at=checked_at - 1)
    if not scan.todo:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"no new settled log objects in {source.describe()}: {line}"), cursor=next_cursor.text()
        )
    generation = cursor.generation + 1
    names = [source.name_of(version.key) for version in scan.todo]
    requests = run_requests(names, settings.run_files, generation)
    context.log.info(f"{line}; requesting {len(requests)} runs")
    next_cursor = replace(next_cursor, generation=generation)
    return dg.SensorResult(run_requests=requests, cursor=next_cursor.text())
