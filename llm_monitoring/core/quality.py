"""Quality gates over daily aggregates: unpriced share, pass-rate drop, cost spike.

Pure functions over the rows of the daily tables; the thresholds come from environment variables
(read by `llm_monitoring.config.quality_thresholds`) so a deployment tunes them without code.
Every evaluation judges a set of days (see `judged_days`) and fails when any of them fails, so
the latest result of a gate is the truth about every day it judged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from llm_monitoring.core.windows import days_between, days_label


@dataclass(frozen=True)
class QualityThresholds:
    max_unpriced_share: float = 0.05  # QUALITY_MAX_UNPRICED_SHARE
    max_parse_failures: int = 0  # QUALITY_MAX_PARSE_FAILURES, per last 24 hours
    max_pass_rate_drop: float = 0.2  # QUALITY_MAX_PASS_RATE_DROP, absolute (0.2 = 20 points)
    min_check_runs: int = 20  # QUALITY_MIN_CHECK_RUNS: applicable runs a day (and its baseline) need to be judged
    min_drop_z: float = 3.0  # QUALITY_MIN_DROP_Z: how many standard errors a drop must span to count
    cost_spike_factor: float = 2.0  # QUALITY_COST_SPIKE_FACTOR: day cost over baseline mean
    min_baseline_cost: Decimal = Decimal("0.01")  # QUALITY_MIN_BASELINE_COST (USD/day)
    baseline_days: int = 7  # QUALITY_BASELINE_DAYS
    min_baseline_days: int = 3  # QUALITY_MIN_BASELINE_DAYS: days with data the baseline needs
    lookback_days: int = 7  # QUALITY_LOOKBACK_DAYS: every evaluation judges the last N days (today included)
    min_judge_kappa: float = 0.4  # QUALITY_MIN_JUDGE_KAPPA: an LLM judge's Cohen's kappa against the reviewers
    min_agreement_pairs: int = 30  # QUALITY_MIN_AGREEMENT_PAIRS: rated runs a judge version needs to be judged


@dataclass(frozen=True)
class Finding:
    """One day (and check, where it applies) that breaks a gate, said in one line, with the measured value."""

    day: date
    subject: str
    line: str
    value: float | None = None


def judged_days(today: date, lookback_days: int, rebuilt: Iterable[date] = ()) -> list[date]:
    """The days an evaluation judges: the last `lookback_days` days up to `today`, plus the days just
    rebuilt (a backlog or a backfill can rewrite old days)."""
    recent = days_between(today - timedelta(days=max(lookback_days, 1) - 1), today + timedelta(days=1))
    return sorted(set(recent) | set(rebuilt))


def failing_days(findings: Iterable[Finding]) -> list[date]:
    return sorted({finding.day for finding in findings})


def gate_description(findings: list[Finding], breach: str, judged: str, limit: int = 5) -> str:
    """One paragraph for the UI: every failing day named, the first findings spelt out.

    `breach` says what failing means ("over 5% of runs unpriced"); `judged` which days were judged."""
    days = failing_days(findings)
    lines = [f"{breach} on {len(days)} {'day' if len(days) == 1 else 'days'}: {', '.join(str(day) for day in days)} (judged: {judged})."]
    lines += [finding.line for finding in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more (metadata: findings)")
    return "\n".join(lines)


def nothing_to_judge(judged: list[date], what: str = "runs") -> str:
    return f"nothing to judge: no {what} on the judged days ({days_label(judged)})"


def unpriced_findings(
    usage_rows: Iterable[Mapping[str, Any]], days: Iterable[date], max_share: float
) -> tuple[list[Finding], dict[date, float]]:
    """Days whose share of runs without a price is above `max_share`, and each day's share."""
    runs: dict[date, int] = {}
    unpriced: dict[date, int] = {}
    models: dict[date, set[str]] = {}
    for row in usage_rows:
        day = row["day"]
        runs[day] = runs.get(day, 0) + row["runs"]
        unpriced[day] = unpriced.get(day, 0) + row["unpriced_runs"]
        if row["unpriced_runs"]:
            models.setdefault(day, set()).add(f"{row['provider'] or '?'}/{row['model'] or '?'}")
    shares: dict[date, float] = {}
    findings = []
    for day in sorted(set(days)):
        if not runs.get(day):
            continue
        share = unpriced[day] / runs[day]
        shares[day] = round(share, 4)
        if share > max_share:
            findings.append(
                Finding(
                    day,
                    "unpriced",
                    f"{day}: {unpriced[day]} of {runs[day]} runs unpriced ({share:.0%} > {max_share:.0%}); "
                    f"models: {', '.join(sorted(models.get(day, ())))}",
                    round(share, 4),
                )
            )
    return findings, shares


def pass_rate_findings(
    summary_rows: Iterable[Mapping[str, Any]], days: Iterable[date], thresholds: QualityThresholds
) -> tuple[list[Finding], int]:
    """(day, check) pairs whose pass rate fell more than the allowed drop below the previous days'.

    The baseline pools the previous `baseline_days` days (passed / applicable), so a quiet day
    weighs less than a busy one. A drop counts only when it is also `min_drop_z` standard errors
    wide (two-proportion z-test): with 20 runs a day, a 20-point dip is ordinary noise.
    Returns the findings and how many (day, check) pairs were judged.
    """
    by_day_check: dict[tuple[date, str], tuple[int, int]] = {}
    for row in summary_rows:
        key = (row["day"], row["check_name"])
        passed, applicable = by_day_check.get(key, (0, 0))
        by_day_check[key] = (passed + row["passed"], applicable + row["applicable"])
    checks = sorted({check for _, check in by_day_check})
    findings, judged = [], 0
    for day in sorted(set(days)):
        for check in checks:
            passed, applicable = by_day_check.get((day, check), (0, 0))
            if applicable < thresholds.min_check_runs:
                continue
            base_passed = base_applicable = 0
            for back in range(1, thresholds.baseline_days + 1):
                p, a = by_day_check.get((day - timedelta(days=back), check), (0, 0))
                base_passed, base_applicable = base_passed + p, base_applicable + a
            if base_applicable < thresholds.min_check_runs:
                continue
            judged += 1
            rate, baseline = passed / applicable, base_passed / base_applicable
            z = drop_z(passed, applicable, base_passed, base_applicable)
            if baseline - rate > thresholds.max_pass_rate_drop and z >= thresholds.min_drop_z:
                findings.append(
                    Finding(
                        day,
                        check,
                        f"{day} {check}: pass rate {rate:.0%} ({passed}/{applicable}) vs {baseline:.0%} over the previous "
                        f"{thresholds.baseline_days} days, a drop of {baseline - rate:.0%} (> {thresholds.max_pass_rate_drop:.0%}, z={z:.1f})",
                        round(baseline - rate, 4),
                    )
                )
    return findings, judged


def drop_z(passed: int, applicable: int, base_passed: int, base_applicable: int) -> float:
    """Two-proportion z statistic of the drop from the baseline rate to the day's rate."""
    pooled = (passed + base_passed) / (applicable + base_applicable)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / applicable + 1 / base_applicable))
    drop = base_passed / base_applicable - passed / applicable
    if spread == 0:
        return math.inf if drop > 0 else 0.0
    return drop / spread


def cost_spike_findings(
    usage_rows: Iterable[Mapping[str, Any]], days: Iterable[date], thresholds: QualityThresholds
) -> tuple[list[Finding], dict[date, dict[str, Any]]]:
    """Days whose total cost is over `cost_spike_factor` times the mean of the previous days with runs."""
    cost: dict[date, Decimal] = {}
    runs: dict[date, int] = {}
    for row in usage_rows:
        cost[row["day"]] = cost.get(row["day"], Decimal(0)) + Decimal(row["total_cost"])
        runs[row["day"]] = runs.get(row["day"], 0) + row["runs"]
    findings = []
    details: dict[date, dict[str, Any]] = {}
    for day in sorted(set(days)):
        if day not in cost:
            continue
        previous = [cost[d] for d in (day - timedelta(days=back) for back in range(1, thresholds.baseline_days + 1)) if d in cost]
        if len(previous) < thresholds.min_baseline_days:
            details[day] = {"cost": float(cost[day]), "baseline": None}
            continue
        baseline = sum(previous, Decimal(0)) / len(previous)
        details[day] = {"cost": float(cost[day]), "baseline": float(round(baseline, 6)), "runs": runs[day]}
        if baseline >= thresholds.min_baseline_cost and cost[day] > baseline * Decimal(str(thresholds.cost_spike_factor)):
            per_run = cost[day] / runs[day] if runs[day] else Decimal(0)
            findings.append(
                Finding(
                    day,
                    "cost",
                    f"{day}: cost ${cost[day]:.4f} over {runs[day]} runs (${per_run:.6f}/run) is "
                    f"{cost[day] / baseline:.1f}x the previous {len(previous)} days' mean ${baseline:.4f} "
                    f"(> {thresholds.cost_spike_factor}x)",
                    round(float(cost[day] / baseline), 2),
                )
            )
    return findings, details


def days_to_verify_run_by_run(
    days: Iterable[date],
    runs_now: Mapping[date, int],
    usage_rows: Iterable[Mapping[str, Any]],
    summary_rows: Iterable[Mapping[str, Any]],
    evaluator_version: str,
    check_names: Iterable[str],
) -> list[date]:
    """The judged days whose runs the coverage gate must look at one by one; on the others every run
    has a row of `evaluator_version` for every check, as their daily rows show.

    When a day is rebuilt, daily_usage counts its runs and daily_eval_summary, per check and version,
    those of them with a row. A run gets its rows in the transaction that stores it, and
    re-evaluation replaces a version's rows in one transaction: rows are never taken from a run
    that stays. So if the day holds as many runs now (`runs_now`) as daily_usage counted, and each
    check counted that many, every run of the day has every check. A day with runs stored or
    deleted since its rebuild, rows missing, or no daily rows at all is looked at run by run.
    Reading runs one by one costs a lookup per run and check: about 400,000 for a week of 60,000
    runs, in every ingest run; the daily rows are a few dozen.
    """
    counted: dict[date, int] = {}
    for row in usage_rows:
        counted[row["day"]] = counted.get(row["day"], 0) + row["runs"]
    with_rows = {(row["day"], row["check_name"]): row["runs"] for row in summary_rows if row["evaluator_version"] == evaluator_version}
    names = list(check_names)
    return [
        day
        for day in sorted(set(days))
        if runs_now.get(day, 0)
        and not (counted.get(day) == runs_now[day] and all(with_rows.get((day, name)) == runs_now[day] for name in names))
    ]
