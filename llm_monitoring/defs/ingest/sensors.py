"""The sensor that turns new log files into ingest runs.

A tick only lists the folder and does cursor arithmetic (no parsing, no database writes), so it
stays far below Dagster's 60 s evaluation timeout even on large folders. Files are requested in
batches (many files per run). Files already handed to a queued or running ingest run are left out,
so concurrent runs never work on the same file; a file whose run failed is requested again on a
later tick, and the database's unique content hash guards against any remaining race.
"""

import hashlib
import time

import dagster as dg

from llm_monitoring.config import get_settings
from llm_monitoring.defs import keys
from llm_monitoring.defs.ingest import jobs
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.file_names import name_text
from llm_monitoring.ingest import pending_work
from llm_monitoring.storage.errors import DatabaseUnavailable

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
    if not todo and work.quiet_traces and not _runs_in_flight(context.instance):
        # No file to read, but traces whose last spans arrived SETTLE_SECONDS ago wait to be stored:
        # any ingest run completes them at its end.
        generation = int(context.cursor or 0) + 1
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
    generation = int(context.cursor or 0) + 1
    requests = []
    requested = 0
    for start in range(0, min(len(todo), settings.run_files * MAX_RUNS_PER_TICK), settings.run_files):
        batch = todo[start : start + settings.run_files]
        run_config = keys.ingest_run_config(batch, settled_only=True)
        texts = keys.ingest_run_files(run_config)
        digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"{generation}-{digest}",
                run_config=run_config,
                tags={keys.FILES_TAG: str(len(batch)), keys.FIRST_FILE_TAG: texts[0][:200]},
            )
        )
        requested += len(texts)
    context.log.info(f"{listing}; requesting {len(requests)} runs for {requested} files")
    return dg.SensorResult(run_requests=requests, cursor=str(generation))
