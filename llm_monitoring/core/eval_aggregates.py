"""Daily pass rates of checks and judges, from check rows already counted by group.

The database groups a window's check rows by day, run group, check, version, verdict and judge call
cost (a few hundred groups for a day of 100,000 rows); these functions add the groups up in plain
Python, so the figures are exact decimals on SQLite (costs stored as text) as on Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from llm_monitoring.core.judges import is_judge_version

# One breakdown row per UTC day x the run's provider, model and agent x check x evaluator version.
BREAKDOWN_KEYS = ("day", "provider", "model", "agent_name", "check_name", "evaluator_version")
SUMMARY_KEYS = ("day", "check_name", "evaluator_version")
COUNTS = ("runs", "applicable", "passed")
JUDGE_FIGURES = ("judge_input_tokens", "judge_output_tokens", "judge_cost", "judge_unpriced_calls")


def _empty(keys: dict[str, Any]) -> dict[str, Any]:
    # A judge version's figures start at zero (a day of verdicts without calls cost nothing);
    # a rule check has no calls at all: NULL.
    judge = is_judge_version(keys["evaluator_version"])
    figures = {"judge_input_tokens": 0, "judge_output_tokens": 0, "judge_cost": Decimal(0), "judge_unpriced_calls": 0}
    return {**keys, **dict.fromkeys(COUNTS, 0), **(figures if judge else dict.fromkeys(JUDGE_FIGURES))}


def summarize_eval_breakdown(groups: Iterable[Sequence[Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Checks by BREAKDOWN_KEYS from counted groups (see storage.daily.EVAL_COLUMNS): runs with a row,
    applicable ones (passed is not NULL) and passed ones; for an LLM judge, its calls' tokens and the
    cost of the priced calls, the unpriced ones counted apart (never added as $0)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for values in groups:
        group = dict(zip(columns, values, strict=True))
        if group["day"] is None:
            continue  # checks of undated runs belong to no day
        key = tuple(group[name] for name in BREAKDOWN_KEYS)
        row = found.get(key) or found.setdefault(key, _empty(dict(zip(BREAKDOWN_KEYS, key, strict=True))))
        checks = int(group["checks"])
        row["runs"] += checks
        if group["passed"] is not None:
            row["applicable"] += checks
            row["passed"] += checks if group["passed"] else 0
        if row["judge_cost"] is not None and group["judge_called"]:
            row["judge_input_tokens"] += int(group["judge_input_tokens"] or 0)
            row["judge_output_tokens"] += int(group["judge_output_tokens"] or 0)
            if group["judge_cost"] is None:
                row["judge_unpriced_calls"] += checks
            else:
                row["judge_cost"] += Decimal(group["judge_cost"]) * checks
    return [found[key] for key in sorted(found, key=_sort_key)]


def roll_up_evals(breakdown: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """daily_eval_summary's rows: the breakdown added up by day x check x version, with the pass rate
    (passed / applicable; NULL when nothing applied)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part in breakdown:
        key = tuple(part[name] for name in SUMMARY_KEYS)
        row = found.get(key) or found.setdefault(key, _empty(dict(zip(SUMMARY_KEYS, key, strict=True))))
        for name in COUNTS:
            row[name] += part[name]
        if row["judge_cost"] is not None:
            for name in JUDGE_FIGURES:
                row[name] += part[name] or 0
    for row in found.values():
        row["pass_rate"] = round(row["passed"] / row["applicable"], 6) if row["applicable"] else None
    return [found[key] for key in sorted(found, key=_sort_key)]


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((value is None, value) for value in key)
