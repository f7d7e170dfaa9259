"""`llm-monitoring retention [--dry-run]`: the retention job the schedule runs, executed in this process."""

from __future__ import annotations

import logging

from llm_monitoring.config import get_settings
from llm_monitoring.defs import keys
from llm_monitoring.defs.loggers import command_line_logger
from llm_monitoring.ingest_runs import failure_message, open_instance
from llm_monitoring.retention import RetentionReport

logger = logging.getLogger("llm_monitoring.retention_runs")


class RetentionFailed(RuntimeError):
    """The retention run failed; the message is one line, with any password masked."""


def run_retention(*, dry_run: bool = False) -> RetentionReport:
    from llm_monitoring.definitions import defs  # deferred: loading definitions imports all of Dagster's graph

    job = defs.resolve_job_def(keys.RETENTION_JOB)
    run_config = keys.retention_run_config(dry_run=dry_run)
    if not get_settings().debug and not logger.isEnabledFor(logging.DEBUG):
        # The command prints the outcome itself; failures in one line, not Dagster's stack traces.
        job = job.with_logger_defs({"console": command_line_logger})
        run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    instance = open_instance()
    try:
        result = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, tags={keys.TRIGGER_TAG: "command line"}
        )
    finally:
        instance.dispose()
    if not result.success:
        raise RetentionFailed(failure_message(result, "retention"))
    return result.output_for_node(keys.RETENTION_OP)
