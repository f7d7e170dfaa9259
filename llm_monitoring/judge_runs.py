"""Run the judge job in this process (`llm-monitoring judge run`): the same Dagster job judge_new_runs_sensor
triggers and a backfill of `judge_verdicts` runs, over a range of day partitions in one run.

With DAGSTER_HOME set, the run is recorded in that instance and shows in the UI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from llm_monitoring.config import get_settings
from llm_monitoring.core.windows import day_start
from llm_monitoring.defs import keys
from llm_monitoring.defs.loggers import command_line_logger
from llm_monitoring.defs.partitions import daily_partitions
from llm_monitoring.ingest_runs import failure_message, open_instance
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import run_day_span, runs_outside_window

logger = logging.getLogger("llm_monitoring.judge_runs")


class JudgeRunFailed(RuntimeError):
    """The judge run failed; the message is one line, with any password masked."""


@dataclass(frozen=True)
class JudgeDays:
    """The partition days a judge command covers, and the stored runs it leaves out."""

    first: date
    last: date  # inclusive
    runs_left_out: int  # undated, or on days outside the partitions (HISTORY_START_DATE .. today) or the dates asked

    @property
    def start(self) -> datetime:
        return day_start(self.first)

    @property
    def end(self) -> datetime:
        return day_start(self.last + timedelta(days=1))

    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


def judge_days(database: Database, first: date | None, last: date | None) -> JudgeDays | None:
    """The days from `first` to `last` (default: the first and last day with runs), within the partitions;
    None when no partition day is left."""
    if first is None or last is None:
        span = run_day_span(database)
        if span is None:
            return None
        first, last = first or span[0], last or span[1]
    first = max(first, daily_partitions.start.date())
    last = min(last, (datetime.now(UTC) + timedelta(days=daily_partitions.end_offset - 1)).date())
    if last < first:
        return None
    days = JudgeDays(first, last, 0)
    return JudgeDays(first, last, runs_outside_window(database, days.start, days.end))


@dataclass(frozen=True)
class JudgeOutcome:
    run_id: str
    metadata: dict[str, Any]


def run_judges(judges: Sequence[str], days: JudgeDays, *, instance: dg.DagsterInstance | None = None) -> JudgeOutcome:
    """Run the judge job once over `days` (one run for the whole range) with these judges (default: all)."""
    from llm_monitoring.definitions import defs  # deferred: loading definitions imports all of Dagster's graph

    job = defs.resolve_job_def(keys.JUDGE_JOB)
    owned = instance is None
    instance = instance or open_instance()
    run_config: dict[str, Any] = keys.judge_run_config(judges)
    if not get_settings().debug and not logger.isEnabledFor(logging.DEBUG):
        # The judge's progress lines and warnings as plain lines; Dagster's events stay in the run's record.
        job = job.with_logger_defs({"console": command_line_logger})
        run_config["loggers"] = {"console": {"config": {"log_level": "INFO"}}}
    if days.first == days.last:
        partition: dict[str, Any] = {"partition_key": days.first.isoformat()}
        tags = {}
    else:
        partition = {}
        tags = {keys.RANGE_START_TAG: days.first.isoformat(), keys.RANGE_END_TAG: days.last.isoformat()}
    try:
        result = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, tags={keys.TRIGGER_TAG: "command", **tags}, **partition
        )
    finally:
        if owned:
            instance.dispose()
    if not result.success:
        raise JudgeRunFailed(failure_message(result, "judge"))
    metadata: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == keys.JUDGE_VERDICTS:
            metadata = {key: value.value for key, value in materialization.metadata.items()}
    return JudgeOutcome(result.run_id, metadata)
