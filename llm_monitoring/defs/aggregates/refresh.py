"""The refresh an ingest run does: rebuild daily_usage and daily_eval_summary for the days of the runs it
stored, and record each day as a materialization of that partition; the gates then judge them in the
same run.

A separate aggregates run per ingest cost a run launch, a sensor interval and, for a backlog spread
over months, one run per stretch of days or one run over a long range, whose per-partition events
alone took tens of seconds on SQLite.
"""

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from llm_monitoring.core.windows import days_label
from llm_monitoring.core.wording import plural
from llm_monitoring.database_url import mask_url
from llm_monitoring.defs import keys
from llm_monitoring.defs.partitions import daily_partitions
from llm_monitoring.defs.resources import database_key
from llm_monitoring.recompute import rebuild_run_days
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable, StorageError
from llm_monitoring.storage.runs import run_days_in_id_ranges

# Each daily table is materialized as the asset of the same name.
_ASSET_OF_TABLE = {asset.to_user_string(): asset for asset in keys.RUN_AGGREGATES}


def partition_days(days: set[date], now: datetime) -> tuple[set[date], set[date]]:
    """Split days into those that are partitions and those outside (before the start date, or in the future)."""
    first = daily_partitions.start.date()
    last = (now.astimezone(UTC) + timedelta(days=daily_partitions.end_offset - 1)).date()
    inside = {day for day in days if first <= day <= last}
    return inside, days - inside


def _day_metadata(asset: dg.AssetKey, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {keys.DATABASE_KEY: key, keys.REBUILT_BY: keys.REBUILT_BY_INGEST, "rows": len(rows)}
    if asset == keys.DAILY_USAGE:
        metadata |= {
            "runs": sum(row["runs"] for row in rows),
            "unpriced_runs": sum(row["unpriced_runs"] for row in rows),
            "total_cost_usd": float(sum((row["total_cost"] for row in rows), start=0)),
        }
    else:
        metadata["verdicts"] = sum(row["applicable"] for row in rows)
    return metadata


def refresh_days_of_new_runs(context: dg.AssetExecutionContext, monitoring_db: Database, stored_ids: list[int]) -> dict[str, Any]:
    """Rebuild daily_usage and daily_eval_summary for the days of the runs an ingest stored, and record each
    day as a materialization of its partition; returns metadata for llm_logs.

    A failure here does not fail the ingest, whose runs are committed: the metadata says
    `aggregates_refreshed: False` and daily_aggregates_sensor rebuilds those days instead.
    """
    key = database_key(monitoring_db.url)
    if not stored_ids:
        return {keys.DATABASE_KEY: key, keys.AGGREGATES_REFRESHED: True, "aggregated_days": 0}
    began = time.perf_counter()
    try:
        days, outside = partition_days(run_days_in_id_ranges(monitoring_db, [(stored_ids[0], stored_ids[-1])]), datetime.now(UTC))
        rebuilt = rebuild_run_days(monitoring_db, days)
    except (DatabaseUnavailable, StorageError) as error:
        reason = mask_url(str(getattr(error, "orig", error) or error)).strip().splitlines()[0]
        context.log.warning(f"daily aggregates of the stored runs not refreshed ({reason}); {keys.AGGREGATES_SENSOR} will rebuild them")
        return {keys.DATABASE_KEY: key, keys.AGGREGATES_REFRESHED: False, "aggregates_error": reason}
    for table, rebuilds in rebuilt.items():
        asset = _ASSET_OF_TABLE[table]
        for rebuild in rebuilds:
            rows_by_day: dict[date, list[dict[str, Any]]] = {}
            for row in rebuild.rows:
                rows_by_day.setdefault(row["day"], []).append(row)
            for offset in range(rebuild.days):
                day = rebuild.first_day + timedelta(days=offset)
                metadata = _day_metadata(asset, rows_by_day.get(day, []), key)
                context.log_event(dg.AssetMaterialization(asset_key=asset, partition=day.isoformat(), metadata=metadata))
    context.log.info(f"daily aggregates of {plural(len(days), 'day')} rebuilt in {time.perf_counter() - began:.2f} s")
    if outside:
        context.log.warning(outside_warning(outside))
    return {keys.DATABASE_KEY: key, keys.AGGREGATES_REFRESHED: True, "aggregated_days": len(days), "days": days_label(days)}


def outside_warning(days: set[date]) -> str:
    return (
        f"{plural(len(days), 'day')} outside the partitions ({daily_partitions.start:%Y-%m-%d} to today, HISTORY_START_DATE) "
        f"not aggregated: {days_label(days)}"
    )
