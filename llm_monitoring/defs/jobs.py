"""Jobs: the ingest job that the sensor triggers and the command line runs in-process."""

from __future__ import annotations

import dagster as dg

INGEST_JOB_NAME = "ingest_logs_job"

ingest_job = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=dg.AssetSelection.assets("llm_logs", "eval_checks"),
    description="Ingest log files: parse, price, evaluate and store them, then mark them processed.",
    tags={"llm_monitoring/kind": "ingest"},
)


def ingest_run_config(files: list[str]) -> dict:
    return {"ops": {"ingest_logs": {"config": {"files": files}}}}
