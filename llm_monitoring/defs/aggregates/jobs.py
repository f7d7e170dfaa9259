"""The job that rebuilds daily aggregates over a range of days (requested by daily_aggregates_sensor)."""

import dagster as dg

from llm_monitoring.defs import keys

daily_aggregates_job = dg.define_asset_job(
    keys.AGGREGATES_JOB,
    # No gates in these partitioned runs: a run over a range would show a SKIPPED evaluation per
    # partition. The sensor requests quality_gates_job for the rebuilt days afterwards.
    selection=dg.AssetSelection.assets(keys.DAILY_USAGE, keys.DAILY_EVAL_SUMMARY, keys.DAILY_FEEDBACK).without_checks(),
    description=(
        "Rebuild the daily aggregates of some days; requested by daily_aggregates_sensor (feedback changes, days an ingest "
        "could not refresh, the first catch-up) or backfilled by hand after loading runs outside the ingest."
    ),
    tags={keys.KIND_TAG: "aggregates"},
    executor_def=dg.in_process_executor,
)
