"""The retention job: one op that applies RETENTION_DAYS and RETENTION_RAW_DAYS (llm_monitoring/retention.py).

Run by the daily schedule (schedules.py) and, in-process, by `llm-monitoring retention [--dry-run]`.
"""

import dagster as dg
from pydantic import Field

from llm_monitoring.config import InvalidSetting, LogsDirUnusable, retention_settings
from llm_monitoring.defs import keys
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.retention import RetentionReport, apply_retention


class RetentionConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Count what would be deleted and change nothing (no audit row either).")


@dg.op(
    name=keys.RETENTION_OP,
    description="Delete runs older than RETENTION_DAYS (with their checks, feedback and ledger rows) and drop the raw "
    "logs of runs older than RETENTION_RAW_DAYS, in batches; write the audit row into retention_log.",
    out=dg.Out(RetentionReport, description="What was deleted (or would be, on a dry run)."),
)
def apply_retention_op(
    context: dg.OpExecutionContext, config: RetentionConfig, database: DatabaseResource, log_source: LogSourceResource
) -> RetentionReport:
    try:
        settings = retention_settings()
    except InvalidSetting as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    try:
        still_there = log_source.get_source().holds
    except (LogsDirUnusable, ValueError) as error:
        context.log.warning(f"processed_files rows are kept: {error}")
        still_there = None
    trigger = context.run.tags.get(keys.TRIGGER_TAG) or context.run.tags.get(keys.SCHEDULE_NAME_TAG) or context.run_id
    with database.open_for_step() as db:
        report = apply_retention(db, settings, dry_run=config.dry_run, still_there=still_there, triggered_by=trigger)
    for line in report.lines():
        context.log.info(line)
    context.add_output_metadata(
        {
            "dry_run": report.dry_run,
            "run_cutoff": report.run_cutoff.isoformat() if report.run_cutoff else None,
            "raw_cutoff": report.raw_cutoff.isoformat() if report.raw_cutoff else None,
            "raw_logs_dropped": report.raw_logs_dropped,
            **{f"deleted_{table}": count for table, count in report.rows_deleted.items()},
            "audit_row": report.audit_id,
        }
    )
    return report


@dg.job(
    name=keys.RETENTION_JOB,
    description="Apply RETENTION_DAYS and RETENTION_RAW_DAYS: delete old runs with their checks, feedback and ledger rows, "
    "drop old raw logs, write an audit row (retention_log). Run daily by daily_retention_schedule and by `llm-monitoring retention`.",
    tags={keys.KIND_TAG: "retention"},
    executor_def=dg.in_process_executor,
)
def retention_job() -> None:
    apply_retention_op()
