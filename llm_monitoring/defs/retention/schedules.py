"""The daily retention schedule: on when RETENTION_DAYS or RETENTION_RAW_DAYS is set.

Dagster takes a schedule's default status when it loads the code, so "on when set" is decided then
(like HISTORY_START_DATE): with either variable set, the schedule starts RUNNING; without, STOPPED.
A status switched in the UI overrides the default. Each tick reads the variables again, so a
schedule left running after they were unset skips with the reason instead of starting a run.
"""

import dagster as dg

from llm_monitoring.config import retention_configured
from llm_monitoring.defs import keys
from llm_monitoring.defs.retention.jobs import retention_job

RETENTION_CRON = "15 3 * * *"  # daily at 03:15 UTC, away from midnight when daily partitions turn over


def build_retention_schedule(configured: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=keys.RETENTION_SCHEDULE,
        job=retention_job,
        cron_schedule=RETENTION_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if configured else dg.DefaultScheduleStatus.STOPPED,
        description="Runs retention_job daily at 03:15 UTC; on by default when RETENTION_DAYS or RETENTION_RAW_DAYS is set "
        "when the code loads.",
    )
    def daily_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        if not retention_configured():
            return dg.SkipReason("RETENTION_DAYS and RETENTION_RAW_DAYS are unset: everything is kept")
        return dg.RunRequest(tags={keys.TRIGGER_TAG: keys.RETENTION_SCHEDULE}, run_config=keys.retention_run_config(dry_run=False))

    return daily_retention_schedule


daily_retention_schedule = build_retention_schedule(retention_configured())
