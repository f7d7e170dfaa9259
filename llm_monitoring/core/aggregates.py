"""Daily aggregates of runs, checks and feedback, computed with pandas from plain rows.

Percentiles and decimal sums are computed here rather than in SQL, so the figures are the same on
SQLite (no percentile functions, costs stored as decimal text) and on Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from llm_monitoring.core.judges import is_judge_version

GROUP_KEYS = ("provider", "model", "agent_name")


def _day(moment: datetime) -> date:
    return moment.date()


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
    return frame.assign(day=frame["run_started_at"].map(_day)) if not frame.empty else frame


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


def summarize_daily_evals(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Pass rate by UTC day x check x evaluator version; "not applicable" (NULL) rows are left out of the rate.

    An LLM judge's rows (versions "judge:...") also sum their calls' tokens and cost: the cost of the
    priced calls, the unpriced ones counted apart (never added as $0). Rule checks have no calls: NULL.
    """
    frame = _dated_frame(rows, columns)
    if frame.empty:
        return []
    result = []
    for (day, check_name, version), group in frame.groupby(["day", "check_name", "evaluator_version"], sort=True):
        verdicts = group["passed"].dropna().astype(bool)
        applicable, passed = len(verdicts), int(verdicts.sum())
        costs: dict[str, Any] = dict.fromkeys(("judge_input_tokens", "judge_output_tokens", "judge_cost", "judge_unpriced_calls"))
        if is_judge_version(version) and "judge_called" in group:
            called = group[group["judge_called"].fillna(False).astype(bool)]
            costs = {
                "judge_input_tokens": _token_sum(called["judge_input_tokens"]),
                "judge_output_tokens": _token_sum(called["judge_output_tokens"]),
                "judge_cost": _decimal_sum(called["judge_cost"]),
                "judge_unpriced_calls": int(called["judge_cost"].map(lambda value: value is None or _is_nan(value)).sum()),
            }
        result.append(
            {
                "day": day,
                "check_name": check_name,
                "evaluator_version": version,
                "runs": len(group),
                "applicable": applicable,
                "passed": passed,
                "pass_rate": round(passed / applicable, 6) if applicable else None,
                **costs,
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
