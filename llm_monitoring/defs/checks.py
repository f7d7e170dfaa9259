"""Asset checks: a few aggregate quality gates, not one check per run (per-run verdicts are rows of eval_checks).

A check run with a partition (a backfill, or the aggregates sensor's runs) judges the days of its
partition window; run on its own (the "Execute" button), it judges the latest day with data
(coverage: the whole history). Thresholds are environment variables, see QualityThresholds.
"""

from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg

from llm_monitoring import db
from llm_monitoring.config import quality_thresholds
from llm_monitoring.core import evaluation
from llm_monitoring.core.quality import (
    Finding,
    cost_spike_findings,
    pass_rate_findings,
    unpriced_findings,
)
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.recompute import day_range

PARSE_FAILURE_WINDOW = timedelta(hours=24)


def _window(context: dg.AssetCheckExecutionContext) -> tuple[datetime, datetime] | None:
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_time_window
        return window.start, window.end
    return None


def judged_days(context: dg.AssetCheckExecutionContext, database: db.Database, table: str) -> list[date]:
    """The days of the run's partition window, or else the latest day in `table`."""
    window = _window(context)
    if window is not None:
        return _window_days(window)
    latest = db.latest_daily_day(database, table)
    return [latest] if latest else []


def _window_days(window: tuple[datetime, datetime]) -> list[date]:
    first, end = day_range(*window)
    return [first + timedelta(days=offset) for offset in range((end - first).days)]


def _judged_rows(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource, table: str, lookback_days: int = 0
) -> tuple[list[date], list[dict[str, Any]]]:
    """The judged days and their rows of `table`, with `lookback_days` before them for a baseline."""
    with database.open_for_step(ensure_schema=False) as monitoring_db:
        days = judged_days(context, monitoring_db, table)
        if not days:
            return days, []
        return days, db.daily_rows(monitoring_db, table, days[0] - timedelta(days=lookback_days), days[-1] + timedelta(days=1))


def _gate_result(findings: list[Finding], days: list[date], passed_description: str, **metadata: Any) -> dg.AssetCheckResult:
    """A WARN gate over days: fails on any finding, and shows the findings and their days."""
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=findings[0].line if findings else passed_description,
        metadata={
            "days_checked": _span(days),
            **metadata,
            "failing_days": _failing_days(findings),
            "findings": _findings_md(findings),
        },
    )


def _findings_md(findings: list[Finding], limit: int = 20) -> dg.MetadataValue:
    lines = [f"- {finding.line}" for finding in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... {len(findings) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) or "_none_")


def _failing_days(findings: list[Finding]) -> str:
    return ", ".join(sorted({finding.day.isoformat() for finding in findings})) or "none"


def _span(days: list[date]) -> str:
    return f"{days[0]}..{days[-1]}" if days else "none"


@dg.asset_check(
    asset="daily_usage",
    name="unpriced_runs_share",
    description="Share of the day's runs without a price (unknown model, no usage) stays at or below QUALITY_MAX_UNPRICED_SHARE (default 5%). WARN.",
)
def unpriced_runs_share(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    days, rows = _judged_rows(context, database, "daily_usage")
    findings, shares = unpriced_findings(rows, days, limits.max_unpriced_share)
    return _gate_result(
        findings,
        days,
        f"at most {limits.max_unpriced_share:.0%} unpriced on {_span(days)}",
        threshold=limits.max_unpriced_share,
        highest_share=max(shares.values(), default=0.0),
    )


@dg.asset_check(
    asset="daily_usage",
    name="cost_spike",
    description=(
        "The day's total cost stays at or below QUALITY_COST_SPIKE_FACTOR (default 2x) times the mean daily cost of the "
        "previous QUALITY_BASELINE_DAYS (default 7) days with runs. WARN."
    ),
)
def cost_spike(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    days, rows = _judged_rows(context, database, "daily_usage", limits.baseline_days)
    findings, details = cost_spike_findings(rows, days, limits)
    latest = details[max(details)] if details else {}
    return _gate_result(
        findings,
        days,
        f"no cost spike on {_span(days)}",
        factor=limits.cost_spike_factor,
        latest_day_cost_usd=latest.get("cost"),
        latest_day_baseline_usd=latest.get("baseline"),
    )


@dg.asset_check(
    asset="daily_eval_summary",
    name="pass_rate_drop",
    description=(
        "No check's pass rate (current evaluator version) falls more than QUALITY_MAX_PASS_RATE_DROP (default 0.2 = 20 "
        "points) below its rate over the previous QUALITY_BASELINE_DAYS days, by at least QUALITY_MIN_DROP_Z (default 3) "
        "standard errors, on days with QUALITY_MIN_CHECK_RUNS (default 20) applicable runs. WARN."
    ),
)
def pass_rate_drop(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    version = evaluation.EVALUATOR_VERSION
    days, rows = _judged_rows(context, database, "daily_eval_summary", limits.baseline_days)
    findings, judged = pass_rate_findings([row for row in rows if row["evaluator_version"] == version], days, limits)
    return _gate_result(
        findings,
        days,
        f"no pass-rate drop on {_span(days)} ({judged} day x check pairs judged)",
        evaluator_version=version,
        max_drop=limits.max_pass_rate_drop,
        pairs_judged=judged,
        failing_pairs=len(findings),
    )


@dg.asset_check(
    asset="daily_eval_summary",
    name="eval_coverage",
    description=(
        "Every run has a row of the current evaluator version for every check. After a rule change this fails until "
        "`reevaluate_logs` is backfilled over the days it lists. ERROR."
    ),
)
def eval_coverage(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    version, names = evaluation.EVALUATOR_VERSION, evaluation.CHECK_NAMES
    window = _window(context)
    with database.open_for_step(ensure_schema=False) as monitoring_db:
        missing = db.runs_missing_checks(monitoring_db, version, names, *(window or (None, None)))
    days = sorted({started.date() for _, started in missing if started is not None})
    scope = _span(_window_days(window)) if window else "all runs"
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(missing)} runs ({scope}) lack evaluator {version} checks on {len(days)} days: backfill reevaluate_logs over {_span(days)}"
            if missing else f"every run ({scope}) has evaluator {version}'s {len(names)} checks"
        ),
        metadata={
            "scope": scope,
            "evaluator_version": version,
            "runs_missing_checks": len(missing),
            "days_missing": len(days),
            "backfill_range": _span(days),
            "sample_run_ids": ", ".join(str(log_id) for log_id, _ in missing[:10]) or "none",
        },
    )


@dg.asset_check(
    asset="log_files",
    name="recent_parse_failures",
    description=(
        "Log files that failed to parse (ingest_errors, unresolved) in the last 24 hours stay at or below "
        "QUALITY_MAX_PARSE_FAILURES (default 0). WARN. The files are in the quarantine folder."
    ),
)
def recent_parse_failures(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    since = datetime.now(timezone.utc) - PARSE_FAILURE_WINDOW
    with database.open_for_step(ensure_schema=False) as monitoring_db:
        errors = db.ingest_errors_since(monitoring_db, since)
    sample = "\n".join(f"- `{error['filepath']}`: {error['error']}" for error in errors[:10])
    return dg.AssetCheckResult(
        passed=len(errors) <= limits.max_parse_failures,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(errors)} files failed to parse in the last 24 hours (allowed: {limits.max_parse_failures})",
        metadata={
            "failures_last_24h": len(errors),
            "allowed": limits.max_parse_failures,
            "latest": dg.MetadataValue.md(sample or "_none_"),
        },
    )


QUALITY_CHECKS = [unpriced_runs_share, cost_spike, pass_rate_drop, eval_coverage, recent_parse_failures]

USAGE_CHECK_KEYS = [dg.AssetCheckKey(dg.AssetKey("daily_usage"), name) for name in ("unpriced_runs_share", "cost_spike")]
EVAL_SUMMARY_CHECK_KEYS = [dg.AssetCheckKey(dg.AssetKey("daily_eval_summary"), name) for name in ("pass_rate_drop", "eval_coverage")]
PARSE_FAILURES_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("log_files"), "recent_parse_failures")
