"""The one root Definitions object of the project: `llm_monitoring.definitions:defs`."""

from __future__ import annotations

import dagster as dg

from llm_monitoring.defs.assets import ingest_logs, log_files
from llm_monitoring.defs.jobs import ingest_job
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.defs.sensors import new_log_files_sensor

defs = dg.Definitions(
    assets=[log_files, ingest_logs],
    jobs=[ingest_job],
    sensors=[new_log_files_sensor],
    resources={
        "log_source": LogSourceResource(),
        "database": DatabaseResource(),
    },
)
