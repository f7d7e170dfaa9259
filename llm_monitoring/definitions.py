"""The root of the project's Dagster definitions: `llm_monitoring.definitions:defs`.

Every module under `llm_monitoring/defs/` is loaded and its assets, checks, jobs and sensors
collected (one folder per domain: ingest, history, aggregates, quality); the resources are declared
once in `defs/resources.py`. `dagster dev`, `dagster api grpc -m llm_monitoring.definitions`, `dg`
and the command line all load this object.
"""

import logging
from pathlib import Path

import dagster as dg


def _not_location_name_mismatch(record: logging.LogRecord) -> bool:
    # Loaded with `-m llm_monitoring.definitions` (compose's code server, `dagster asset materialize`),
    # the location is named after the module, not "llm_monitoring" as in pyproject, and Dagster warns
    # on every load. The name only matters for components created in the UI, which this project has none of.
    return not record.getMessage().startswith("The code location name 'llm_monitoring' configured on this project does not match")


logging.getLogger("dagster.components.core.component_tree").addFilter(_not_location_name_mismatch)

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
