"""Jobs: the ingest job that the sensor triggers and the command line runs in-process."""

from __future__ import annotations

import dagster as dg

from llm_monitoring.file_names import name_text

INGEST_JOB_NAME = "ingest_logs_job"

ingest_job = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=dg.AssetSelection.assets("llm_logs", "eval_checks"),
    description="Ingest log files: parse, price, evaluate and store them, then mark them processed.",
    tags={"llm_monitoring/kind": "ingest"},
)


def ingest_run_config(files: list[str], *, settled_only: bool = False) -> dict:
    """Run config of the ingest job for file names as the OS gives them (sent in their text form)."""
    config: dict = {"files": [name_text(name) for name in files]}
    if settled_only:
        config["settled_only"] = True
    return {"ops": {"ingest_logs": {"config": config}}}
