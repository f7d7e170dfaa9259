"""Retention: delete runs older than RETENTION_DAYS and drop the raw logs of runs older than
RETENTION_RAW_DAYS, in short batches, and write the audit row.

Plain Python on top of the Database, like ingest.py; the `retention_job` op calls it, so the daily
schedule and `llm-monitoring retention` share this one code path. A dry run counts what would go
and changes nothing (no audit row either).

What goes with a run: its checks, its feedback (and the change records of deleted feedback), the
resolved ingest errors last seen before the cutoff, and the processed_files rows of files that are
no longer in the log folder. What stays: the daily tables (the only record of the deleted days:
recompute.py never rebuilds a day before the latest cutoff), open ingest errors (their files wait
in quarantine), and the processed_files rows of renamed files still in the folder (without them the
ingest would take those files for new ones and store the deleted runs again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from llm_monitoring.config import RetentionSettings
from llm_monitoring.core.wording import plural
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.retention import (
    BATCH_RUNS,
    LEDGER_TABLES,
    RUN_TABLES,
    RetentionEntry,
    count_expired,
    delete_processed,
    delete_resolved_errors_before,
    delete_runs_before,
    drop_raw_logs_before,
    processed_before,
    record_retention,
)
from llm_monitoring.storage.retention import (
    first_rebuildable_day as first_rebuildable_day_of,
)

logger = logging.getLogger("llm_monitoring.retention")


@dataclass(frozen=True)
class RetentionReport:
    dry_run: bool
    settings: RetentionSettings
    started_at: datetime
    run_cutoff: datetime | None
    raw_cutoff: datetime | None
    rows_deleted: dict[str, int] = field(default_factory=dict)  # per table; on a dry run, what would be
    raw_logs_dropped: int = 0
    notes: tuple[str, ...] = ()
    audit_id: int | None = None  # the retention_log row written (None on a dry run)

    def lines(self) -> list[str]:
        if not self.settings.enabled:
            return ["RETENTION_DAYS and RETENTION_RAW_DAYS are unset: everything is kept, nothing was deleted"]
        verb = "would delete" if self.dry_run else "deleted"
        lines = []
        if self.run_cutoff is not None:
            tables = ", ".join(
                f"{self.rows_deleted.get(name, 0)} {name}" for name in (*RUN_TABLES, *LEDGER_TABLES) if name in self.rows_deleted
            )
            lines.append(
                f"runs started before {self.run_cutoff:%Y-%m-%d %H:%M:%S} UTC (RETENTION_DAYS={self.settings.days}): {verb} "
                f"{plural(self.rows_deleted.get('llm_logs', 0), 'run')} ({tables})"
            )
        if self.raw_cutoff is not None:
            verb = "would drop" if self.dry_run else "dropped"
            lines.append(
                f"raw logs of runs started before {self.raw_cutoff:%Y-%m-%d %H:%M:%S} UTC (RETENTION_RAW_DAYS={self.settings.raw_days}): "
                f"{verb} {plural(self.raw_logs_dropped, 'raw log')}, their parsed columns kept"
            )
        lines += list(self.notes)
        lines.append("dry run: nothing was changed" if self.dry_run else f"audit row retention_log #{self.audit_id}")
        return lines


def cutoffs(settings: RetentionSettings, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The run cutoff and the raw-log cutoff: `now` less each number of days (None when unset)."""
    run_cutoff = now - timedelta(days=settings.days) if settings.days is not None else None
    raw_cutoff = now - timedelta(days=settings.raw_days) if settings.raw_days is not None else None
    return run_cutoff, raw_cutoff


def apply_retention(
    database: Database,
    settings: RetentionSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    still_there: Callable[[str], bool] | None = None,
    triggered_by: str = "",
    batch_size: int = BATCH_RUNS,
) -> RetentionReport:
    """Apply the retention settings (or count what they would delete, with `dry_run`).

    `still_there(processed_as)` says whether a processed file is still in the log folder; without
    it (the folder cannot be read), every processed_files row is kept."""
    started_at = now or datetime.now(UTC)
    run_cutoff, raw_cutoff = cutoffs(settings, started_at)
    if dry_run:
        counts = count_expired(database, run_cutoff, raw_cutoff)
        raw = counts.pop("raw_logs")
        notes = ("processed_files rows are counted when they are deleted (only those of files gone from the log folder)",)
        return RetentionReport(True, settings, started_at, run_cutoff, raw_cutoff, counts, raw, notes if run_cutoff else ())
    deleted: dict[str, int] = {}
    notes: list[str] = []
    if run_cutoff is not None:
        deleted = delete_runs_before(database, run_cutoff, batch_size=batch_size)
        deleted["ingest_errors"] = delete_resolved_errors_before(database, run_cutoff)
        if still_there is None:
            deleted["processed_files"] = 0
            notes.append("processed_files kept: the log folder cannot be read to tell which processed files are gone")
        else:
            deleted["processed_files"] = _delete_gone_processed(database, run_cutoff, still_there, batch_size)
    dropped = drop_raw_logs_before(database, raw_cutoff, batch_size=batch_size) if raw_cutoff is not None else 0
    entry = RetentionEntry(
        started_at=started_at,
        finished_at=datetime.now(UTC),
        retention_days=settings.days,
        run_cutoff=run_cutoff,
        retention_raw_days=settings.raw_days,
        raw_cutoff=raw_cutoff,
        rows_deleted=deleted,
        raw_logs_dropped=dropped,
        triggered_by=triggered_by,
    )
    audit_id = record_retention(database, entry)
    report = RetentionReport(False, settings, started_at, run_cutoff, raw_cutoff, deleted, dropped, tuple(notes), audit_id)
    for line in report.lines():
        logger.info("%s", line)
    return report


def _delete_gone_processed(database: Database, cutoff: datetime, still_there: Callable[[str], bool], batch_size: int) -> int:
    deleted = 0
    after_id = 0
    while rows := processed_before(database, cutoff, after_id, batch_size):
        after_id = rows[-1][0]
        deleted += delete_processed(database, [row_id for row_id, processed_as in rows if not still_there(processed_as)])
    return deleted


def first_rebuildable_day(database: Database) -> date | None:
    """The first day whose daily rows may be rebuilt from llm_logs (see storage.retention)."""
    with database.connect() as connection:
        return first_rebuildable_day_of(connection)
