"""The history jobs: `reprice_logs` and `reevaluate_logs`, each rewriting a window of days and the
daily aggregate that depends on it, one run per backfill (BackfillPolicy.single_run)."""

import dagster as dg

from llm_monitoring.defs import keys

# Without the gates: in a run over a range of days Dagster shows each unexecuted per-partition plan
# of a check as SKIPPED. daily_aggregates_sensor has the gates judge the rebuilt days afterwards.
reprice_logs = dg.define_asset_job(
    keys.REPRICE_JOB,
    selection=dg.AssetSelection.assets(keys.LOG_COSTS, keys.DAILY_USAGE).without_checks(),
    description="Re-price the runs of the selected days and rebuild their daily_usage, in one run per backfill.",
    tags={keys.KIND_TAG: "history"},
)

reevaluate_logs = dg.define_asset_job(
    keys.REEVALUATE_JOB,
    selection=dg.AssetSelection.assets(keys.LOG_EVALUATIONS, keys.DAILY_EVAL_SUMMARY).without_checks(),
    description="Re-evaluate the runs of the selected days with the current rules and rebuild their daily_eval_summary.",
    tags={keys.KIND_TAG: "history"},
)
