"""The ingest job that new_log_files_sensor triggers and the command line runs in-process
(its run config: `keys.ingest_run_config`)."""

from __future__ import annotations

import dagster as dg

from llm_monitoring.defs import keys

ingest_job = dg.define_asset_job(
    keys.INGEST_JOB,
    # The ingest step also rebuilds daily_usage and daily_eval_summary for the days it stored; the
    # gates then judge them in the same run, so dashboards and gates are current when it ends.
    selection=dg.AssetSelection.assets(keys.LLM_LOGS, keys.EVAL_CHECKS) | dg.AssetSelection.checks(*keys.GATES),
    description=(
        "Ingest log files: parse, price, evaluate and store them, mark them processed, rebuild the daily aggregates "
        "of the days they belong to and evaluate the quality gates."
    ),
    tags={keys.KIND_TAG: "ingest"},
    # Small, sequential steps: a process per step would cost more than the steps (the ingest starts
    # its own worker processes for large batches).
    executor_def=dg.in_process_executor,
)
