"""Asset checks: a few aggregate quality gates, not one check per run (per-run verdicts are rows of eval_checks).

Every evaluation judges a fixed look-back, the last QUALITY_LOOKBACK_DAYS days (default 7, today
included), plus the days rebuilt by the run it belongs to (an ingest of old logs, a backfill) and
any days given in its config. It fails when any judged day fails, and names every failing day, so
the status the UI shows for a gate (its latest evaluation) is the truth about all the days it
judged. The gates run in unpartitioned runs only (the ingest run, `quality_gates_job`): in a run
over a partition range, Dagster 1.13 plans an unpartitioned check once per partition and shows each
plan it does not execute as SKIPPED. Partitioned checks (a Preview in 1.13) get their partition
from a single-partition step only, so they cannot judge a range in one run either.

A failed gate records an alert per failing day (or quarantined file) when ALERT_WEBHOOK_URL is set;
the alerts sensor delivers it (llm_monitoring/alerts.py).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from llm_monitoring.alerts import record
from llm_monitoring.config import alert_settings, quality_thresholds
from llm_monitoring.core import evaluation
from llm_monitoring.core.alerts import Failure, GateAlert
from llm_monitoring.core.quality import (
    Finding,
    cost_spike_findings,
    days_to_verify_run_by_run,
    failing_days,
    gate_description,
    judged_days,
    nothing_to_judge,
    pass_rate_findings,
    unpriced_findings,
)
from llm_monitoring.core.windows import day_range, day_start, days_between, days_label, parse_days, stretches
from llm_monitoring.core.wording import plural
from llm_monitoring.database_url import mask_url
from llm_monitoring.defs import keys
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.storage.daily import daily_rows
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable, StorageError
from llm_monitoring.storage.ledger import ingest_errors_since
from llm_monitoring.storage.runs import runs_by_day, runs_missing_checks

PARSE_FAILURE_WINDOW = timedelta(hours=24)


class GateConfig(dg.Config):
    days: list[str] = Field(
        default_factory=list,
        description=(
            "Days to judge besides the last QUALITY_LOOKBACK_DAYS days: YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD "
            "(the aggregates sensor passes the days a backfill rebuilt)."
        ),
    )


@dataclass(frozen=True)
class Judged:
    """The days one evaluation judges, and how to say which they are."""

    days: list[date]
    label: str

    def row_windows(self, baseline_days: int = 0) -> list[tuple[date, date]]:
        """[first, end) windows of the daily rows a gate reads: the judged days and the baseline before
        each; far-apart days (the look-back and an old day of a backlog) are read apart."""
        return [
            (first - timedelta(days=baseline_days), last + timedelta(days=1))
            for first, last in stretches(self.days, merge_gap_days=baseline_days + 1)
        ]


def _run_id(context: dg.AssetCheckExecutionContext) -> str | None:
    try:
        return context.run.run_id
    except dg.DagsterError:  # invoked directly, outside a run: no run to read
        return None


def _days_rebuilt_in_run(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey) -> set[date]:
    """Days of `asset` materialized earlier in this run: by the ingest, or by a partitioned run."""
    days: set[date] = set()
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_time_window
        days.update(days_between(*day_range(window.start, window.end)))
    run_id = _run_id(context)
    if run_id is None:
        return days
    records = context.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for entry in records:
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == asset and materialization.partition:
            days.add(date.fromisoformat(materialization.partition))
    return days


def judge(context: dg.AssetCheckExecutionContext, config: GateConfig, asset: dg.AssetKey) -> Judged:
    lookback = quality_thresholds().lookback_days
    try:
        asked = parse_days(config.days)
    except ValueError as error:
        raise dg.Failure(description=f"config days: {error}") from None
    today = datetime.now(UTC).date()
    extra = (_days_rebuilt_in_run(context, asset) | asked) - set(judged_days(today, lookback))
    label = f"the last {plural(lookback, 'day')}, {days_label(judged_days(today, lookback))}"
    if extra:
        label += f", and {plural(len(extra), 'day')} rebuilt or asked for, {days_label(extra)}"
    return Judged(judged_days(today, lookback, extra), label)


def _judged_rows(monitoring_db: Database, judged: Judged, table: str, baseline_days: int = 0) -> tuple[list[dict[str, Any]], set[date]]:
    """The rows of `table` over the judged days and their baseline, and which judged days have rows."""
    rows = [row for first, end in judged.row_windows(baseline_days) for row in daily_rows(monitoring_db, table, first, end)]
    return rows, {row["day"] for row in rows} & set(judged.days)


def raise_alert(
    context: dg.AssetCheckExecutionContext,
    monitoring_db: Database,
    asset: dg.AssetKey,
    severity: dg.AssetCheckSeverity,
    threshold: float | None,
    failures: list[Failure],
) -> str:
    """Record the failures for the alerts sensor; returns what the check's metadata says about it."""
    if not failures:
        return "none"
    if not alert_settings().webhook_url:
        return "off (ALERT_WEBHOOK_URL is not set)"
    gate = context.check_specs[0].name
    alert = GateAlert(gate, asset.to_user_string(), severity.value, threshold, tuple(failures), _run_id(context))
    try:
        recorded = record(monitoring_db, alert)
    except (DatabaseUnavailable, StorageError) as error:
        # The gate's verdict stands; only its alert is missing, and the log says why.
        reason = mask_url(str(getattr(error, "orig", error) or error)).strip().splitlines()[0]
        context.log.warning(f"alert of {gate} not recorded: {reason}")
        return f"not recorded: {reason}"
    names = {failure.subject: failure.file or failure.subject for failure in failures}
    new = ", ".join(names[subject] for subject in recorded[:10]) + (f" and {len(recorded) - 10} more" if len(recorded) > 10 else "")
    return f"{len(recorded)} new{f' ({new})' if recorded else ''}, {len(failures) - len(recorded)} alerted before"


def _day_failures(findings: Iterable[Finding]) -> list[Failure]:
    """One failure per day: a gate alerts once per failing day, whatever it found on it."""
    by_day: dict[date, list[Finding]] = {}
    for finding in findings:
        by_day.setdefault(finding.day, []).append(finding)
    return [
        Failure(
            day.isoformat(),
            "; ".join(finding.line for finding in found),
            max((finding.value for finding in found if finding.value is not None), default=None),
        )
        for day, found in sorted(by_day.items())
    ]


def _gate_result(
    context: dg.AssetCheckExecutionContext,
    monitoring_db: Database,
    asset: dg.AssetKey,
    findings: list[Finding],
    judged: Judged,
    days_with_data: set[date],
    *,
    breach: str,
    passed: str,
    threshold: float | None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    **metadata: Any,
) -> dg.AssetCheckResult:
    """A gate over days: fails on any finding, names every failing day, records their alert."""
    if findings:
        description = gate_description(findings, breach, judged.label)
    elif not days_with_data:
        description = nothing_to_judge(judged.days)
    else:
        description = f"{passed} on each of the {plural(len(days_with_data), 'judged day')} with runs (judged: {judged.label})"
    return dg.AssetCheckResult(
        passed=not findings,
        severity=severity,
        description=description,
        metadata={
            "judged_days": judged.label,
            "days_with_runs": len(days_with_data),
            **metadata,
            "threshold": threshold,
            "failing_days": ", ".join(str(day) for day in failing_days(findings)) or "none",
            "findings": _findings_md(findings),
            "alert": raise_alert(context, monitoring_db, asset, severity, threshold, _day_failures(findings)),
        },
    )


def _findings_md(findings: list[Finding], limit: int = 50) -> dg.MetadataValue:
    lines = [f"- {finding.line}" for finding in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... {len(findings) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) or "_none_")


# Ordering: in an ingest run the gates judge the days its step has just rebuilt, so they depend on it.
AFTER_INGEST = [keys.EVAL_CHECKS]


@dg.asset_check(
    asset=keys.UNPRICED_RUNS_SHARE.asset_key,
    name=keys.UNPRICED_RUNS_SHARE.name,
    additional_deps=AFTER_INGEST,
    description=(
        "Share of a day's runs without a price (unknown model, no usage) stays at or below QUALITY_MAX_UNPRICED_SHARE "
        "(default 5%), on each judged day: the last QUALITY_LOOKBACK_DAYS days and the days just rebuilt. WARN."
    ),
)
def unpriced_runs_share(context: dg.AssetCheckExecutionContext, config: GateConfig, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    judged = judge(context, config, keys.DAILY_USAGE)
    with database.open_for_step() as monitoring_db:
        rows, with_data = _judged_rows(monitoring_db, judged, "daily_usage")
        findings, shares = unpriced_findings(rows, judged.days, limits.max_unpriced_share)
        return _gate_result(
            context,
            monitoring_db,
            keys.DAILY_USAGE,
            findings,
            judged,
            with_data,
            breach=f"over {limits.max_unpriced_share:.0%} of runs unpriced",
            passed=f"at most {limits.max_unpriced_share:.0%} unpriced",
            threshold=limits.max_unpriced_share,
            highest_share=max(shares.values(), default=0.0),
        )


@dg.asset_check(
    asset=keys.COST_SPIKE.asset_key,
    name=keys.COST_SPIKE.name,
    additional_deps=AFTER_INGEST,
    description=(
        "A day's total cost stays at or below QUALITY_COST_SPIKE_FACTOR (default 2x) times the mean daily cost of the "
        "previous QUALITY_BASELINE_DAYS (default 7) days with runs, on each judged day. WARN."
    ),
)
def cost_spike(context: dg.AssetCheckExecutionContext, config: GateConfig, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    judged = judge(context, config, keys.DAILY_USAGE)
    with database.open_for_step() as monitoring_db:
        rows, with_data = _judged_rows(monitoring_db, judged, "daily_usage", limits.baseline_days)
        findings, details = cost_spike_findings(rows, judged.days, limits)
        latest = details[max(details)] if details else {}
        return _gate_result(
            context,
            monitoring_db,
            keys.DAILY_USAGE,
            findings,
            judged,
            with_data,
            breach=f"cost over {limits.cost_spike_factor}x the baseline",
            passed="no cost spike",
            threshold=limits.cost_spike_factor,
            latest_day_cost_usd=latest.get("cost"),
            latest_day_baseline_usd=latest.get("baseline"),
        )


@dg.asset_check(
    asset=keys.PASS_RATE_DROP.asset_key,
    name=keys.PASS_RATE_DROP.name,
    additional_deps=AFTER_INGEST,
    description=(
        "No check's pass rate (current evaluator version) falls more than QUALITY_MAX_PASS_RATE_DROP (default 0.2 = 20 "
        "points) below its rate over the previous QUALITY_BASELINE_DAYS days, by at least QUALITY_MIN_DROP_Z (default 3) "
        "standard errors, on judged days with QUALITY_MIN_CHECK_RUNS (default 20) applicable runs. WARN."
    ),
)
def pass_rate_drop(context: dg.AssetCheckExecutionContext, config: GateConfig, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    version = evaluation.EVALUATOR_VERSION
    judged = judge(context, config, keys.DAILY_EVAL_SUMMARY)
    with database.open_for_step() as monitoring_db:
        rows, with_data = _judged_rows(monitoring_db, judged, "daily_eval_summary", limits.baseline_days)
        current = [row for row in rows if row["evaluator_version"] == version]
        findings, pairs = pass_rate_findings(current, judged.days, limits)
        return _gate_result(
            context,
            monitoring_db,
            keys.DAILY_EVAL_SUMMARY,
            findings,
            judged,
            with_data,
            breach=f"a pass rate dropped by over {limits.max_pass_rate_drop:.0%}",
            passed=f"no pass-rate drop ({plural(pairs, 'day x check pair')} had enough runs to judge)",
            threshold=limits.max_pass_rate_drop,
            evaluator_version=version,
            pairs_judged=pairs,
            failing_pairs=len(findings),
        )


@dg.asset_check(
    asset=keys.EVAL_COVERAGE.asset_key,
    name=keys.EVAL_COVERAGE.name,
    additional_deps=AFTER_INGEST,
    description=(
        "Every run of the judged days has a row of the current evaluator version for every check. After a rule change "
        "this fails until `reevaluate_logs` is backfilled over the days it lists (config `days` widens the look). ERROR."
    ),
)
def eval_coverage(context: dg.AssetCheckExecutionContext, config: GateConfig, database: DatabaseResource) -> dg.AssetCheckResult:
    version, names = evaluation.EVALUATOR_VERSION, evaluation.CHECK_NAMES
    judged = judge(context, config, keys.DAILY_EVAL_SUMMARY)
    missing: list[tuple[int, datetime | None]] = []
    with database.open_for_step() as monitoring_db:
        summary, with_data = _judged_rows(monitoring_db, judged, "daily_eval_summary")
        usage, _ = _judged_rows(monitoring_db, judged, "daily_usage")
        unverified = days_to_verify_run_by_run(judged.days, runs_by_day(monitoring_db, judged.days), usage, summary, version, names)
        for first, last in stretches(unverified):
            missing += runs_missing_checks(monitoring_db, version, names, day_start(first), day_start(last + timedelta(days=1)))
        by_day: dict[date, int] = {}
        for _, started in missing:
            if started is not None:
                by_day[started.date()] = by_day.get(started.date(), 0) + 1
        findings = [
            Finding(day, "coverage", f"{day}: {plural(count, 'run')} without evaluator {version}'s checks", count)
            for day, count in sorted(by_day.items())
        ]
        return _gate_result(
            context,
            monitoring_db,
            keys.DAILY_EVAL_SUMMARY,
            findings,
            judged,
            with_data,
            breach=f"runs lack evaluator {version} checks (backfill reevaluate_logs over {days_label(by_day)})",
            passed=f"every run has evaluator {version}'s {len(names)} checks",
            threshold=None,
            severity=dg.AssetCheckSeverity.ERROR,
            evaluator_version=version,
            runs_missing_checks=len(missing),
            days_read_run_by_run=len(unverified),
            days_missing=len(by_day),
            backfill_range=f"{min(by_day)}..{max(by_day)}" if by_day else "none",
            sample_run_ids=", ".join(str(log_id) for log_id, _ in missing[:10]) or "none",
        )


@dg.asset_check(
    asset=keys.RECENT_PARSE_FAILURES.asset_key,
    name=keys.RECENT_PARSE_FAILURES.name,
    additional_deps=[keys.LLM_LOGS],
    description=(
        "Log files that failed to parse (ingest_errors, unresolved) in the last 24 hours stay at or below "
        "QUALITY_MAX_PARSE_FAILURES (default 0). WARN. The files are in the quarantine folder; each is alerted once."
    ),
)
def recent_parse_failures(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    since = datetime.now(UTC) - PARSE_FAILURE_WINDOW
    with database.open_for_step() as monitoring_db:
        errors = ingest_errors_since(monitoring_db, since)
        passed = len(errors) <= limits.max_parse_failures
        failures = (
            []
            if passed
            else [Failure(error["content_hash"], f"{error['filepath']}: {error['error']}", file=error["filepath"]) for error in errors]
        )
        files = ", ".join(error["filepath"] for error in errors[:10]) + (f" and {len(errors) - 10} more" if len(errors) > 10 else "")
        sample = "\n".join(f"- `{error['filepath']}`: {error['error']}" for error in errors[:10])
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{plural(len(errors), 'file')} failed to parse in the last 24 hours (allowed: {limits.max_parse_failures})"
                + (f": {files}" if errors else "")
            ),
            metadata={
                "failures_last_24h": len(errors),
                "allowed": limits.max_parse_failures,
                "latest": dg.MetadataValue.md(sample or "_none_"),
                "alert": raise_alert(
                    context, monitoring_db, keys.LOG_FILES, dg.AssetCheckSeverity.WARN, limits.max_parse_failures, failures
                ),
            },
        )


QUALITY_CHECKS = [unpriced_runs_share, cost_spike, pass_rate_drop, eval_coverage, recent_parse_failures]
DAILY_GATES = [unpriced_runs_share, cost_spike, pass_rate_drop, eval_coverage]  # the gates with a `days` config
