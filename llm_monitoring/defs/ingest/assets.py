"""Assets of the ingest: log files (external) -> llm_logs -> eval_checks."""

import dagster as dg
from pydantic import Field

from llm_monitoring.core.evaluation import EVALUATOR_VERSION
from llm_monitoring.defs import keys
from llm_monitoring.defs.aggregates.refresh import refresh_days_of_new_runs
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource, database_kind
from llm_monitoring.ingest import IngestReport, ingest_files
from llm_monitoring.policies import load_policies
from llm_monitoring.sources import SourceUnavailable

INGEST_GROUP = "ingest"

log_files = dg.AssetSpec(
    keys.LOG_FILES,
    description="Run logs written by agents into LOGS_DIR, a folder or an S3 prefix: per-run JSON, pydantic-ai message histories, JSON arrays, JSON Lines, OTLP JSON traces. Not materialized here.",
    group_name=INGEST_GROUP,
    kinds={"json", "file"},
)


class IngestConfig(dg.Config):
    files: list[str] = Field(
        default_factory=list,
        description="Names of log files directly in the log folder (not paths; bytes that are not UTF-8 "
        "written as \\xNN), or keys relative to the prefix of an s3:// LOGS_DIR. Empty: every pending file.",
    )
    settled_only: bool = Field(
        default=False,
        description="Leave files modified less than SETTLE_SECONDS ago for a later run, even if they parse.",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            keys.LLM_LOGS,
            deps=[log_files],
            description="One row per agent run: prompt, instructions, model, tokens, timing, tool calls, answer, cost.",
            group_name=INGEST_GROUP,
            kinds={database_kind(), "table"},
        ),
        dg.AssetSpec(
            keys.EVAL_CHECKS,
            deps=[keys.LLM_LOGS],
            description="One row per run and rule-based check (seven checks), with the evaluator version.",
            group_name=INGEST_GROUP,
            kinds={database_kind(), "table"},
        ),
    ],
    name=keys.INGEST_OP,
    # A database restart is the usual cause of a failed ingest: retry the step before failing the run.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=1, backoff=dg.Backoff.EXPONENTIAL),
)
def ingest_logs(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    log_source: LogSourceResource,
    database: DatabaseResource,
):
    """Parse, price and evaluate log files and store them; one transaction per batch of files."""
    try:
        source = log_source.get_source()
        names = [source.name_for(text) for text in config.files]
        load_policies()  # a price file or REDACT setting that cannot be used fails the run before any file is read
    except ValueError as error:  # LOGS_DIR unusable, a name outside the folder, a folder setting outside it, a bad setting: nothing touched
        raise dg.Failure(description=str(error), allow_retries=False) from None
    # An outage fails the step with one clear line; the files stay in place for the retry.
    with database.open_for_step() as db:
        try:
            report = ingest_files(
                source,
                db,
                names or None,
                settled_only=config.settled_only,
                on_batch=lambda batch: context.log.info(f"batch: {batch.line()}"),
            )
        except SourceUnavailable as error:  # a bucket's outage (the step retries), credentials or access: one line
            raise dg.Failure(description=str(error), allow_retries=error.transient) from None
        aggregates = refresh_days_of_new_runs(context, db, report.stored_ids)
    for name, reason in report.errors:
        context.log.warning(f"not stored, {name}: {reason}")
    for name, reason in report.left_in_place:
        context.log.error(f"{name}: {reason}")
    context.log.info(report.line())
    yield dg.MaterializeResult(asset_key=keys.LLM_LOGS, metadata={**logs_metadata(report, source.describe()), **aggregates})
    yield dg.MaterializeResult(
        asset_key=keys.EVAL_CHECKS,
        metadata={"runs_evaluated": report.stored, "evaluator_version": EVALUATOR_VERSION},
    )


def logs_metadata(report: IngestReport, source: str) -> dict[str, object]:
    """What an ingest records on its llm_logs materialization (the runner prints it, the aggregates sensor reads the id range)."""
    return {
        "source": source,
        "files_seen": report.files_seen,
        "runs_stored": report.stored,
        "already_stored": report.already_stored,
        "quarantined": report.quarantined,
        "failed_runs": report.failed_runs,
        "still_being_written": report.unsettled,
        "left_in_place": len(report.left_in_place),
        "megabytes_read": round(report.bytes_read / 1e6, 3),
        keys.FIRST_NEW_ID: report.stored_ids[0] if report.stored_ids else None,
        keys.LAST_NEW_ID: report.stored_ids[-1] if report.stored_ids else None,
    }
