"""Daily aggregates of runs and feedback, computed with pandas from plain rows (checks: eval_aggregates.py).

Percentiles and decimal sums are computed here rather than in SQL, so the figures are the same on
SQLite (no percentile functions, costs stored as decimal text) and on Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd

GROUP_KEYS = ("provider", "model", "agent_name")


def _decimal_sum(values: Iterable[Any]) -> Decimal:
    return sum((Decimal(value) for value in values if value is not None and not _is_nan(value)), Decimal(0))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _token_sum(values: pd.Series) -> int:
    return int(pd.to_numeric(values, errors="coerce").fillna(0).sum())


def _percentile(values: pd.Series, share: float) -> float | None:
    known = pd.to_numeric(values, errors="coerce").dropna()
    return None if known.empty else round(float(known.quantile(share)), 6)


def _none_if_nan(value: Any) -> Any:
    return None if _is_nan(value) else value


def _dated_frame(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """The rows as a frame with their run's UTC day; rows of undated runs belong to no day."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    frame = frame[frame["run_started_at"].notna()]
    # Vectorized: a Python call per row was most of the time of a day of 100,000 check rows.
    return frame.assign(day=pd.to_datetime(frame["run_started_at"], utc=True).dt.date) if not frame.empty else frame


def summarize_daily_usage(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Usage by UTC day x provider x model x agent from run rows (see db.USAGE_COLUMNS).

    Costs sum the priced runs only; tokens sum the runs that report usage; durations give p50/p95
    with linear interpolation (pandas' and numpy's default).
    """
    frame = _dated_frame(rows, columns)
    if frame.empty:
        return []
    result = []
    for keys, group in frame.groupby(["day", *GROUP_KEYS], dropna=False, sort=True):
        day, provider, model, agent_name = keys
        priced = int(group["total_cost"].map(lambda value: value is not None and not _is_nan(value)).sum())
        result.append(
            {
                "day": day,
                "provider": _none_if_nan(provider),
                "model": _none_if_nan(model),
                "agent_name": _none_if_nan(agent_name),
                "runs": len(group),
                "priced_runs": priced,
                "unpriced_runs": len(group) - priced,
                "input_tokens": _token_sum(group["total_input_tokens"]),
                "output_tokens": _token_sum(group["total_output_tokens"]),
                "cache_read_tokens": _token_sum(group["cache_read_tokens"]),
                "cache_write_tokens": _token_sum(group["cache_write_tokens"]),
                "input_cost": _decimal_sum(group["input_cost"]),
                "output_cost": _decimal_sum(group["output_cost"]),
                "total_cost": _decimal_sum(group["total_cost"]),
                "duration_p50_seconds": _percentile(group["duration_seconds"], 0.5),
                "duration_p95_seconds": _percentile(group["duration_seconds"], 0.95),
            }
        )
    return result


def summarize_daily_feedback(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Good and bad feedback counts by UTC day of the run they are about."""
    frame = _dated_frame(rows, columns)
    if frame.empty:
        return []
    result = []
    for day, group in frame.groupby("day", sort=True):
        good = int(group["is_good"].astype(bool).sum())
        total = len(group)
        result.append(
            {
                "day": day,
                "feedback": total,
                "good": good,
                "bad": total - good,
                "good_pct": round(100 * good / total, 4) if total else None,
            }
        )
    return result
