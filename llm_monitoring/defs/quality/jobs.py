"""The quality gates job: the gates alone, over the look-back and the days its run config names."""

from collections.abc import Iterable
from datetime import date
from typing import Any

import dagster as dg

from llm_monitoring.core.windows import stretches
from llm_monitoring.defs import keys
from llm_monitoring.defs.quality import checks

quality_gates_job = dg.define_asset_job(
    keys.GATES_JOB,
    selection=dg.AssetSelection.checks(*keys.GATES),
    description=(
        "Evaluate the quality gates on the last QUALITY_LOOKBACK_DAYS days and the days in their config; requested by "
        "daily_aggregates_sensor after a backfill rebuilt daily_usage or daily_eval_summary (an ingest run evaluates them itself)."
    ),
    tags={keys.KIND_TAG: "gates"},
    executor_def=dg.in_process_executor,
)


def gates_run_config(days: Iterable[date]) -> dict[str, Any]:
    """Run config of quality_gates_job judging `days` besides the look-back (read by checks.GateConfig)."""
    labels = [str(first) if first == last else f"{first}..{last}" for first, last in stretches(days)]
    return {"ops": {gate.node_def.name: {"config": {"days": labels}} for gate in checks.DAILY_GATES}}
