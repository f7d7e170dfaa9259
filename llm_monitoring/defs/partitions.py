"""Daily partitions over the runs' start time (llm_logs.run_started_at), in UTC."""

import os
import warnings

import dagster as dg

# BackfillPolicy is Beta in 1.13 and warns on every definition; the behaviour relied on is the
# documented one (one run per range), so the warning only adds noise to every command.
warnings.filterwarnings("ignore", message=r".*backfill_policy.*", category=dg.BetaWarning)

DEFAULT_HISTORY_START_DATE = "2024-01-01"


def history_start_date() -> str:
    """First partition day: HISTORY_START_DATE (YYYY-MM-DD), default 2024-01-01. Runs before it are in no partition."""
    return os.environ.get("HISTORY_START_DATE", "").strip() or DEFAULT_HISTORY_START_DATE


# end_offset=1 makes today a partition: runs of today are aggregated as they arrive, not tomorrow.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=history_start_date(),
    timezone="UTC",
    end_offset=1,
)

# One run covers any range of days; the assets read context.partition_time_window.
single_run = dg.BackfillPolicy.single_run()
