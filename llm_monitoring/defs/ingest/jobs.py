"""Jobs: the ingest job that the sensor triggers and the command line runs in-process."""

from __future__ import annotations

import dagster as dg

from llm_monitoring.file_names import name_text
from llm_monitoring.defs.checks import GATE_KEYS

INGEST_JOB_NAME = "ingest_logs_job"

ingest_job = dg.define_asset_job(
    INGEST_JOB_NAME,
    # The ingest step also rebuilds daily_usage and daily_eval_summary for the days it stored; the
    # gates then judge them in the same run, so dashboards and gates are current when it ends.
    selection=dg.AssetSelection.assets("llm_logs", "eval_checks") | dg.AssetSelection.checks(*GATE_KEYS),
    description=(
        "Ingest log files: parse, price, evaluate and store them, mark them processed, rebuild the daily aggregates "
        "of the days they belong to and evaluate the quality gates."
    ),
    tags={"llm_monitoring/kind": "ingest"},
    # Small, sequential steps: a process per step would cost more than the steps (the ingest starts
    # its own worker processes for large batches).
    executor_def=dg.in_process_executor,
)


def ingest_run_config(files: list[str], *, settled_only: bool = False) -> dict:
    """Run config of the ingest job for file names as the OS gives them (sent in their text form)."""
    config: dict = {"files": [name_text(name) for name in files]}
    if settled_only:
        config["settled_only"] = True
    return {"ops": {"ingest_logs": {"config": config}}}
