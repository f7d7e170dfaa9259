"""Run the ingest job in this process: once (`llm-monitoring ingest`) or as a watcher (`llm-monitoring watch`).

The same Dagster job the sensor triggers, executed with `execute_in_process`, so there is one
ingest code path. With DAGSTER_HOME set, runs are recorded in that instance and show in the UI.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import dagster as dg

from llm_monitoring.config import check_logs_dir, get_settings
from llm_monitoring.core.wording import plural
from llm_monitoring.database_url import mask_url
from llm_monitoring.defs import keys
from llm_monitoring.defs.loggers import command_line_logger
from llm_monitoring.sources import LocalDirectorySource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.ledger import known_processed

logger = logging.getLogger("llm_monitoring.ingest_runs")

MAX_BACKOFF_SECONDS = 60.0


class IngestFailed(RuntimeError):
    """The ingest run failed; the message is one line, with any password masked."""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    metadata: dict[str, object]

    def line(self) -> str:
        m = self.metadata
        return (
            f"{plural(int(m.get('files_seen', 0)), 'file')}: {m.get('runs_stored', 0)} stored, {m.get('already_stored', 0)} already stored, "
            f"{m.get('quarantined', 0)} quarantined, {m.get('still_being_written', 0)} still being written"
            + (f", {m['left_in_place']} left in place (see the errors above)" if m.get("left_in_place") else "")
        )


def open_instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when one is configured (runs show in the UI), else an ephemeral one."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_ingest(files: Sequence[str] | None = None, *, settled_only: bool = False, instance: dg.DagsterInstance | None = None) -> RunOutcome:
    """Run the ingest job once over `files`, names in the log folder (default: every pending file)."""
    from llm_monitoring.definitions import defs  # deferred: loading definitions imports all of Dagster's graph

    job = defs.resolve_job_def(keys.INGEST_JOB)
    owned = instance is None
    instance = instance or open_instance()
    try:
        run_config = keys.ingest_run_config(files or [], settled_only=settled_only)
        if not get_settings().debug and not logger.isEnabledFor(logging.DEBUG):
            # The caller reports a failed run in one line; Dagster's console logger would print each
            # failure event's stack trace first (they stay in the run's record in the instance).
            job = job.with_logger_defs({"console": command_line_logger})
            run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            tags={keys.TRIGGER_TAG: "runner"},
        )
    finally:
        if owned:
            instance.dispose()
    if not result.success:
        raise IngestFailed(failure_message(result))
    metadata: dict[str, object] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == keys.LLM_LOGS:
            metadata = {key: value.value for key, value in materialization.metadata.items()}
    return RunOutcome(result.run_id, metadata)


def failure_message(result: dg.ExecuteInProcessResult, what: str = "ingest") -> str:
    """The root error of the run's failed step, as one line with any password masked.

    After retries Dagster reports "Exceeded max_retries"; the cause chain holds the real error.
    """
    for event in reversed(result.all_events):
        error = getattr(event.event_specific_data, "error", None)
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        line = (error.message or "").strip().splitlines()[0] if (error.message or "").strip() else ""
        if line:
            return mask_url(line.removeprefix("dagster._core.definitions.events.Failure: "))
    return f"{what} run {result.run_id} failed"


def watch(poll_seconds: float | None = None, *, stop_after: float | None = None) -> None:
    """Poll the log folder and ingest new files until interrupted; back off while the database is down."""
    settings = get_settings()
    poll = poll_seconds if poll_seconds is not None else settings.poll_seconds
    check_logs_dir(settings.logs_dir)  # a missing folder is said at once, not watched forever
    source = LocalDirectorySource.from_settings(settings)
    backoff = poll
    deadline = None if stop_after is None else time.monotonic() + stop_after
    logger.info("watching %s every %.1fs (Ctrl-C stops)", source.describe(), poll)
    instance = open_instance()
    database = Database()
    try:
        with InterruptWatch() as interrupts:
            while deadline is None or time.monotonic() < deadline:
                settled_before = time.time() - settings.settle_seconds
                try:
                    # The same listing as the sensor's (prefix-named new files included), so a pass
                    # starts only when there is work; the run itself lists again.
                    pending = source.list_pending(partial(known_processed, database))
                    if any(log_file.mtime <= settled_before for log_file in pending):
                        # Settled files only, like the sensor: a file written to within SETTLE_SECONDS
                        # is left for a later pass even if it parses (a writer rewriting snapshots).
                        logger.info(run_ingest(settled_only=True, instance=instance).line())
                    backoff = poll
                except (IngestFailed, DatabaseUnavailable) as error:
                    interrupts.check()  # a Ctrl-C that failed the run stops the watcher, it is not retried
                    backoff = min(max(backoff * 2, poll), MAX_BACKOFF_SECONDS)
                    logger.error("%s; retrying in %.0fs", error, backoff)
                    interrupts.sleep(backoff)
                    continue
                interrupts.sleep(poll)
    finally:
        database.dispose()
        instance.dispose()


class InterruptWatch:
    """Notices Ctrl-C (SIGINT) even when it arrives while Dagster runs the job.

    Dagster swaps the SIGINT handler during an execution and consumes the interrupt there: the run
    fails, or ends normally if the signal came after its last step. A watcher would then poll on
    forever. The signal wake-up fd receives every signal whatever Python handler is installed, so
    `check` and `sleep` raise KeyboardInterrupt for a Ctrl-C received at any time. Outside the main
    thread (where signals cannot be watched) they only sleep.
    """

    def __enter__(self) -> InterruptWatch:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        try:
            self._previous: int | None = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.set_wakeup_fd(self._previous)
        self._reader.close()
        self._writer.close()

    def check(self) -> None:
        self.sleep(0)

    def sleep(self, seconds: float) -> None:
        ready, _, _ = select.select([self._reader], [], [], seconds)
        if ready and signal.SIGINT in self._reader.recv(256):
            raise KeyboardInterrupt
