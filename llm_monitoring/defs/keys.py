"""The names Dagster knows this project by, in one place: asset keys, check keys, jobs, sensors, run
tags, the metadata one module writes and another reads, and the ingest job's run config (built and
read here, nowhere else).

Table names are storage's business (`llm_monitoring/db.py`); an asset is named after the table it
materializes, but code that means the asset uses the key below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from llm_monitoring.file_names import name_text

# ---------------------------------------------------------------------------- assets

LOG_FILES = dg.AssetKey("log_files")  # external: the JSON files agents write
LLM_LOGS = dg.AssetKey("llm_logs")
EVAL_CHECKS = dg.AssetKey("eval_checks")
LOG_COSTS = dg.AssetKey("log_costs")
LOG_EVALUATIONS = dg.AssetKey("log_evaluations")
FEEDBACK = dg.AssetKey("feedback")  # external: written by the review app and the command line
DAILY_USAGE = dg.AssetKey("daily_usage")
DAILY_EVAL_SUMMARY = dg.AssetKey("daily_eval_summary")
DAILY_FEEDBACK = dg.AssetKey("daily_feedback")
JUDGE_VERDICTS = dg.AssetKey("judge_verdicts")  # LLM judges' rows of eval_checks and their judge_calls

# The daily aggregates an ingest run rebuilds for the days it stored (daily_feedback follows feedback).
RUN_AGGREGATES = (DAILY_USAGE, DAILY_EVAL_SUMMARY)

# ---------------------------------------------------------------------------- checks (the quality gates)

UNPRICED_RUNS_SHARE = dg.AssetCheckKey(DAILY_USAGE, "unpriced_runs_share")
COST_SPIKE = dg.AssetCheckKey(DAILY_USAGE, "cost_spike")
PASS_RATE_DROP = dg.AssetCheckKey(DAILY_EVAL_SUMMARY, "pass_rate_drop")
EVAL_COVERAGE = dg.AssetCheckKey(DAILY_EVAL_SUMMARY, "eval_coverage")
RECENT_PARSE_FAILURES = dg.AssetCheckKey(LOG_FILES, "recent_parse_failures")
JUDGE_AGREEMENT = dg.AssetCheckKey(JUDGE_VERDICTS, "judge_agreement")

DAILY_GATES = (UNPRICED_RUNS_SHARE, COST_SPIKE, PASS_RATE_DROP, EVAL_COVERAGE)  # the gates that judge days
GATES = (*DAILY_GATES, RECENT_PARSE_FAILURES, JUDGE_AGREEMENT)

# ---------------------------------------------------------------------------- jobs and sensors

INGEST_JOB = "ingest_logs_job"
REPRICE_JOB = "reprice_logs"
REEVALUATE_JOB = "reevaluate_logs"
AGGREGATES_JOB = "daily_aggregates_job"
GATES_JOB = "quality_gates_job"
RETENTION_JOB = "retention_job"
RETENTION_OP = "apply_retention"  # the retention job's one op (its run config: retention_run_config)
JUDGE_JOB = "judge_runs_job"

NEW_LOG_FILES_SENSOR = "new_log_files_sensor"
AGGREGATES_SENSOR = "daily_aggregates_sensor"
ALERTS_SENSOR = "quality_alerts_sensor"
RETENTION_SCHEDULE = "daily_retention_schedule"
JUDGE_SENSOR = "judge_new_runs_sensor"

# ---------------------------------------------------------------------------- run tags

KIND_TAG = "llm_monitoring/kind"  # ingest, history, aggregates, gates, retention: set on each job
TRIGGER_TAG = "llm_monitoring/trigger"  # who asked for a run: "runner" or a sensor's name
FILES_TAG = "llm_monitoring/files"  # number of files an ingest run was given
FIRST_FILE_TAG = "llm_monitoring/first_file"
JUDGED_DAYS_TAG = "llm_monitoring/judged_days"
# Dagster's own tags, read or written by this project.
SENSOR_NAME_TAG = "dagster/sensor_name"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# ---------------------------------------------------------------------------- materialization metadata read elsewhere

DATABASE_KEY = "database_key"  # the database a materialization wrote to (resources.database_key)
FIRST_NEW_ID = "first_new_id"  # llm_logs: id range of the runs an ingest stored
LAST_NEW_ID = "last_new_id"
AGGREGATES_REFRESHED = "aggregates_refreshed"  # llm_logs: False when the ingest could not rebuild its days
REBUILT_BY = "rebuilt_by"  # a daily partition rebuilt by an ingest run, whose gates ran with it
REBUILT_BY_INGEST = "ingest"

# ---------------------------------------------------------------------------- the ingest job's run config

INGEST_OP = "ingest_logs"  # the ingest multi-asset's op


def ingest_run_config(files: Iterable[str], *, settled_only: bool = False) -> dict[str, Any]:
    """Run config of the ingest job for file names as the OS gives them (sent in their text form)."""
    config: dict[str, Any] = {"files": [name_text(name) for name in files]}
    if settled_only:
        config["settled_only"] = True
    return {"ops": {INGEST_OP: {"config": config}}}


def ingest_run_files(run_config: Mapping[str, Any] | None) -> list[str]:
    """The file names (text form) an ingest run config asks for; [] for a run over every pending file."""
    config = ((run_config or {}).get("ops") or {}).get(INGEST_OP) or {}
    return list((config.get("config") or {}).get("files") or [])


def retention_run_config(*, dry_run: bool) -> dict[str, Any]:
    """Run config of the retention job (read by defs/retention/jobs.py's RetentionConfig)."""
    return {"ops": {RETENTION_OP: {"config": {"dry_run": dry_run}}}}


# ---------------------------------------------------------------------------- the judge job's run config

JUDGE_OP = "judge_verdicts"  # the judge asset's op


def judge_run_config(judges: Iterable[str] = (), id_ranges: Iterable[tuple[int, int]] = ()) -> dict[str, Any]:
    """Run config of the judge job: these judges (default: every judge of JUDGES_FILE), and only the runs
    with ids in these inclusive ranges (default: every run of the partitions)."""
    config: dict[str, Any] = {}
    if judges:
        config["judges"] = list(judges)
    if id_ranges:
        config["id_ranges"] = [f"{first}-{last}" for first, last in id_ranges]
    return {"ops": {JUDGE_OP: {"config": config}}} if config else {}


def parse_id_ranges(texts: Iterable[str]) -> list[tuple[int, int]]:
    """ "12-40" -> (12, 40), as judge_run_config writes them; a malformed text raises ValueError naming it."""
    ranges = []
    for text in texts:
        first, _, last = text.partition("-")
        if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
            raise ValueError(f"not a range of run ids (FIRST-LAST): {text!r}")
        ranges.append((int(first), int(last)))
    return ranges
