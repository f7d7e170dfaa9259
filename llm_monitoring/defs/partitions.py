"""Daily partitions over the runs' start time (llm_logs.run_started_at), in UTC."""

import warnings

import dagster as dg

from llm_monitoring.config import history_start_date

# BackfillPolicy is Beta in 1.13 and warns on every definition; the behaviour relied on is the
# documented one (one run per range), so the warning only adds noise to every command.
warnings.filterwarnings("ignore", message=r".*backfill_policy.*", category=dg.BetaWarning)

# Said in the description of every daily asset, where the UI counts partitions: with a start date
# before the first log, the empty days in between would otherwise read as a backlog of failures.
PARTITIONS_NOTE = (
    "Partitioned by UTC run day, from HISTORY_START_DATE (default 2024-01-01) to today. A day is materialized when "
    "runs of that day are ingested (or backfilled); a day without any run stays 'missing': nothing ran, nothing is "
    "wrong. Set HISTORY_START_DATE to the day of your first log to leave the empty days before it out."
)

# end_offset=1 makes today a partition: runs of today are aggregated as they arrive, not tomorrow.
# HISTORY_START_DATE is read when the definitions load, not when used: Dagster needs the partitions
# of an asset at definition time. A change shows after the code location reloads.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=history_start_date(),
    timezone="UTC",
    end_offset=1,
)

# One run covers any range of days; the assets read context.partition_time_window.
single_run = dg.BackfillPolicy.single_run()
