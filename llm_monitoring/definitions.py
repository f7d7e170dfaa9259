"""The one root Definitions object of the project: `llm_monitoring.definitions:defs`."""

from __future__ import annotations

import dagster as dg

from llm_monitoring.defs.aggregates import daily_aggregates_job, daily_aggregates_sensor, daily_eval_summary, daily_feedback, daily_usage, feedback
from llm_monitoring.defs.assets import ingest_logs, log_files
from llm_monitoring.defs.alerts import quality_alerts_sensor
from llm_monitoring.defs.checks import QUALITY_CHECKS, quality_gates_job
from llm_monitoring.defs.history import log_costs, log_evaluations, reevaluate_logs, reprice_logs
from llm_monitoring.defs.jobs import ingest_job
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.defs.sensors import new_log_files_sensor

defs = dg.Definitions(
    assets=[log_files, ingest_logs, log_costs, log_evaluations, feedback, daily_usage, daily_eval_summary, daily_feedback],
    asset_checks=QUALITY_CHECKS,
    jobs=[ingest_job, reprice_logs, reevaluate_logs, daily_aggregates_job, quality_gates_job],
    sensors=[new_log_files_sensor, daily_aggregates_sensor, quality_alerts_sensor],
    resources={
        "log_source": LogSourceResource(),
        "database": DatabaseResource(),
    },
)
