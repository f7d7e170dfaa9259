"""`judge_verdicts`: the LLM judges of judges.yaml over the runs of each day, as a backfillable asset.

Like `log_evaluations` it is a view of eval_checks over a window of days (the judges' rows, with
their calls in judge_calls), partitioned by run day with single-run backfills: a range of days is
one run that judges every run of the window not yet judged by each judge's current version.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from llm_monitoring.core.agreement import Agreement, agreement_by_version
from llm_monitoring.core.judges import Judge, JudgeConfigError, select_judges
from llm_monitoring.core.windows import window_label
from llm_monitoring.defs import keys
from llm_monitoring.defs.history.assets import HISTORY_GROUP
from llm_monitoring.defs.metadata import markdown_table
from llm_monitoring.defs.partitions import daily_partitions, single_run
from llm_monitoring.defs.resources import DatabaseResource, database_kind
from llm_monitoring.judging import JudgeReport, judge_window, load_judges, report_metadata
from llm_monitoring.recompute import rebuild_daily_eval_summary
from llm_monitoring.storage.judgements import verdict_reviewer_pairs


class JudgeRunConfig(dg.Config):
    judges: list[str] = Field(default_factory=list, description="Names of the judges to run (default: every judge of JUDGES_FILE).")
    id_ranges: list[str] = Field(
        default_factory=list,
        description="Only the runs with ids in these ranges (FIRST-LAST; judge_new_runs_sensor passes the ingested ones). Empty: every run of the window.",
    )


def configured_judges(config: JudgeRunConfig) -> tuple[Judge, ...]:
    try:
        return select_judges(load_judges(), config.judges)
    except JudgeConfigError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


def agreement_metadata(agreements: list[Agreement]) -> dict[str, Any]:
    rows = [
        {
            "judge": agreement.check_name,
            "version": agreement.evaluator_version,
            "pairs": agreement.pairs,
            "agreement": agreement.raw_agreement,
            "kappa": agreement.kappa,
        }
        for agreement in agreements
    ]
    metadata: dict[str, Any] = {"agreement": dg.MetadataValue.md(markdown_table(rows, ("judge", "version", "pairs", "agreement", "kappa")))}
    for agreement in agreements:
        metadata[f"{agreement.check_name}_pairs_with_feedback"] = agreement.pairs
        if agreement.kappa is not None:
            metadata[f"{agreement.check_name}_kappa"] = round(agreement.kappa, 4)
            metadata[f"{agreement.check_name}_raw_agreement"] = round(agreement.raw_agreement or 0.0, 4)
    return metadata


def judges_table(reports: list[JudgeReport]) -> str:
    rows = [
        {
            "judge": report.judge,
            "version": report.version,
            "model": report.model,
            "judged": report.judged,
            "cached": report.cached,
            "sampled_out": report.sampled_out,
            "failed": len(report.failed_calls),
            "pass_rate": report.pass_rate,
            "cost_usd": report.cost,
            "stopped": report.stopped or "",
        }
        for report in reports
    ]
    fields = ("judge", "version", "model", "judged", "cached", "sampled_out", "failed", "pass_rate", "cost_usd", "stopped")
    return markdown_table(rows, fields, limit=50)


def failed_calls_md(reports: list[JudgeReport], limit: int = 30) -> str:
    failures = [(report.judge, log_id, reason) for report in reports for log_id, reason in report.failed_calls]
    lines = [f"- {judge}, run {log_id}: {reason}" for judge, log_id, reason in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"- ... {len(failures) - limit} more")
    return "\n".join(lines) or "_none_"


@dg.asset(
    key=keys.JUDGE_VERDICTS,
    deps=[keys.EVAL_CHECKS, keys.FEEDBACK],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name=HISTORY_GROUP,
    kinds={database_kind(), "table", "llm"},
    description=(
        "The LLM judges of JUDGES_FILE (judges.yaml) over the runs of each day: one eval_checks row per run and judge "
        "(evaluator_version judge:<name>:<hash>, details = the reason) and its call's tokens and cost in judge_calls. "
        "A run already judged by a judge's current version is never sent again. Materialize a range to judge history "
        "(one run); metadata: runs judged, cached, failed calls, tokens, cost, pass rate, and kappa against the reviewers."
    ),
)
def judge_verdicts(context: dg.AssetExecutionContext, config: JudgeRunConfig, database: DatabaseResource) -> dg.MaterializeResult:
    window = context.partition_time_window
    judges = configured_judges(config)
    try:
        id_ranges = keys.parse_id_ranges(config.id_ranges)
    except ValueError as error:
        raise dg.Failure(description=f"config id_ranges: {error}", allow_retries=False) from None
    label = window_label(window.start, window.end)
    if not judges:
        context.log.info(f"{label}: no judges declared (JUDGES_FILE, default ./judges.yaml): nothing to judge")
    with database.open_for_step() as db:
        reports = judge_window(db, judges, window.start, window.end, id_ranges=id_ranges, log=context.log.info)
        agreements = agreement_by_version(verdict_reviewer_pairs(db, [judge.version for judge in judges]))
        stopped = [report for report in reports if report.stopped]
        if stopped:
            # The verdicts stored before the stop count in the daily summary at once, not after the next run.
            rebuild_daily_eval_summary(db, window.start, window.end)
    metadata: dict[str, Any] = {
        keys.DATABASE_KEY: database.key(),
        "window": label,
        "judges": ", ".join(judge.name for judge in judges) or "none",
        **report_metadata(reports),
        "by_judge": dg.MetadataValue.md(judges_table(reports)),
        "failed_call_runs": dg.MetadataValue.md(failed_calls_md(reports)),
        **agreement_metadata(agreements),
    }
    if stopped:
        reasons = "; ".join(f"{report.judge}: {report.stopped}" for report in stopped)
        raise dg.Failure(description=f"{label}: judge stopped before its last run: {reasons}", metadata=metadata, allow_retries=False)
    return dg.MaterializeResult(metadata=metadata)
