"""One ingest pass over a set of log files: read, parse, price, evaluate, store, then move the files.

Plain Python on top of a LogSource and a Database; the Dagster op calls it, so the sensor,
the one-shot runner and the watcher all share this one code path.

Crash safety comes from the order of effects: the database commits a batch (logs with all
their checks) before any of its files is moved. A crash before the commit leaves nothing
stored and every file in place; a crash after it leaves stored files in place, and the next
pass finds their content hash already stored and only moves them.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import multiprocessing
import multiprocessing.util
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from llm_monitoring.config import Settings, get_settings
from llm_monitoring.core.evaluation import EVALUATOR_VERSION, evaluate_run
from llm_monitoring.core.parsing import PARSER_VERSION, parse_log_bytes
from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import LogRecord, ParseError
from llm_monitoring.db import Database, RunToStore
from llm_monitoring.sources import LogSource

logger = logging.getLogger("llm_monitoring.ingest")


@dataclass
class IngestReport:
    files_seen: int = 0
    bytes_read: int = 0
    stored: int = 0
    already_stored: int = 0
    quarantined: int = 0
    unsettled: int = 0
    missing: int = 0
    stored_ids: list[int] = field(default_factory=list)  # ascending, whatever order batches committed in
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in ("files_seen", "bytes_read", "stored", "already_stored", "quarantined", "unsettled", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        # Workers commit batches concurrently: a later batch can hold lower ids.
        self.stored_ids = sorted(self.stored_ids + other.stored_ids)
        self.errors += other.errors

    def line(self) -> str:
        return (
            f"{self.files_seen} files: {self.stored} stored, {self.already_stored} already stored, "
            f"{self.quarantined} quarantined, {self.unsettled} still being written, {self.missing} gone"
        )


@dataclass(frozen=True)
class _Rejected:
    name: str
    content_hash: str
    reason: str


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def build_run(
    filepath: str,
    digest: str,
    text: str,
    record: LogRecord,
    *,
    origin: str = "file",
    created_at: datetime | None = None,
) -> RunToStore:
    """A parsed run, priced and evaluated with the current rules: what one batch row holds."""
    return RunToStore(
        filepath=filepath,
        content_hash=digest,
        raw_json=text,
        record=record,
        price=price_run(record),
        checks=evaluate_run(record),
        parser_version=PARSER_VERSION,
        evaluator_version=EVALUATOR_VERSION,
        origin=origin,
        created_at=created_at,
    )


def run_from_bytes(raw: bytes, filepath: str, *, fallback_time: datetime | None = None, **options: object) -> RunToStore:
    """Parse, price and evaluate a log's bytes exactly as the ingest does (raises ParseError)."""
    text, record = parse_log_bytes(raw, fallback_time=fallback_time)
    return build_run(filepath, content_hash(raw), text, record, **options)  # type: ignore[arg-type]


def ingest_files(
    source: LogSource,
    database: Database,
    names: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Ingest the named files (all pending ones when `names` is None), one transaction per batch.

    With more than one batch, batches run in worker processes (INGEST_WORKERS, one per core): each
    reads, parses, prices, evaluates and stores a batch on its own connection, while this process
    moves the files of committed batches, in order. At most one batch per worker waits, so memory stays bounded
    whatever the number of files. A single batch runs here: no process to start.
    """
    settings = settings or get_settings()
    if names is None:
        names = [log_file.name for log_file in source.list_pending(database.known_processed)]
    batches = list(_chunks(list(names), settings.batch_files))
    total = IngestReport()
    with _cycle_collector_paused():
        for stored in _stored_batches(source, database, batches, settings):
            report = _finish_batch(source, database, stored)
            total.add(report)
            if on_batch:
                on_batch(report)
    return total


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for one pass (forked workers inherit the pause).

    A batch in flight holds hundreds of thousands of objects, and the collector rescans them every
    few thousand allocations: measured, a quarter of the pass's CPU. Parsed runs and rows hold no
    reference cycles, so reference counting frees them batch by batch and memory stays bounded.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _stored_batches(source: LogSource, database: Database, batches: list[list[str]], settings: Settings) -> Iterator[_StoredBatch]:
    """Store each batch (a failed write stops the pass there) and yield them in order."""
    workers = min(settings.workers, len(batches))
    if workers < 2 or database.in_memory or "fork" not in multiprocessing.get_all_start_methods():
        for batch in batches:
            yield _store_batch(source, database, batch, settings)
        return
    # fork: workers inherit the imported modules, so they start in milliseconds. Each opens its own
    # connection: the unique content hash keeps concurrent batches exactly-once, as with two runners.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_leave_interrupts_to_the_parent)
    try:
        waiting: deque[Future[_StoredBatch]] = deque()
        for batch in batches:
            waiting.append(pool.submit(_store_batch_in_worker, source, database.url, batch, settings))
            if len(waiting) > workers:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        # After a failure, batches not started are dropped and running ones finish before the step
        # ends, so a retry never overlaps them; their files stay in place and are moved next pass.
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(names: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start:start + size]


@dataclass
class _StoredBatch:
    """A committed batch: what this process needs to move its files and quarantine its rejects."""

    report: IngestReport
    files_by_hash: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[_Rejected] = field(default_factory=list)


_worker_databases: dict[str, Database] = {}


def _leave_interrupts_to_the_parent() -> None:
    # Ctrl-C reaches the whole process group. A worker killed mid-batch would break the pool, and the
    # step would be retried; ignoring it lets running batches commit while the parent stops the pass.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _store_batch_in_worker(source: LogSource, url: str, names: list[str], settings: Settings) -> _StoredBatch:
    database = _worker_databases.get(url)
    if database is None:
        database = _worker_databases[url] = Database(url)
        # Close the connection cleanly when the worker exits, instead of dropping it.
        multiprocessing.util.Finalize(database, database.dispose, exitpriority=10)
    return _store_batch(source, database, names, settings)


def _store_batch(source: LogSource, database: Database, names: list[str], settings: Settings) -> _StoredBatch:
    """Read, parse, price, evaluate and store a batch in one transaction; no file moves."""
    batch = _StoredBatch(IngestReport(files_seen=len(names)))
    report, files_by_hash, rejected = batch.report, batch.files_by_hash, batch.rejected
    runs: dict[str, RunToStore] = {}
    now = time.time()
    for name in names:
        log_file = source.stat(name)
        if log_file is None:
            report.missing += 1
            continue
        if log_file.size > settings.max_log_bytes:
            reason = f"file is {log_file.size} bytes, over MAX_LOG_BYTES={settings.max_log_bytes}"
            rejected.append(_Rejected(name, hash_file(source.path_of(name)), reason))
            continue
        try:
            raw = source.read(name)
        except FileNotFoundError:
            report.missing += 1
            continue
        report.bytes_read += len(raw)
        digest = content_hash(raw)
        if digest in runs:
            files_by_hash[digest].append(name)
            continue
        modified = datetime.fromtimestamp(log_file.mtime, timezone.utc)
        try:
            text, record = parse_log_bytes(raw, fallback_time=modified)
        except ParseError as error:
            if now - log_file.mtime < settings.settle_seconds:
                report.unsettled += 1  # probably still being written: look again once it settles
                continue
            rejected.append(_Rejected(name, digest, error.reason))
            continue
        files_by_hash[digest] = [name]
        runs[digest] = build_run(source.path_of(name), digest, text, record)
    if runs:
        result = database.store_runs(list(runs.values()))
        report.stored = len(result.inserted)
        report.already_stored = sum(len(files_by_hash[digest]) for digest in runs) - report.stored
        report.stored_ids = sorted(result.inserted.values())
    return batch


def _finish_batch(source: LogSource, database: Database, batch: _StoredBatch) -> IngestReport:
    """Move a committed batch's files out of the pending set, then quarantine its rejects."""
    moves = []
    for digest, names in batch.files_by_hash.items():
        for name in names:
            moved_to = source.mark_processed(name)
            if moved_to:
                moves.append((name, source.relative(moved_to), digest))
    # A crash before this line leaves a moved file unrecorded: with prefix marking the next pass
    # reads it again, finds its content stored and moves it once more. Nothing is lost or doubled.
    database.record_processed(moves)
    report = batch.report
    for item in batch.rejected:
        _quarantine(source, database, item)
        report.errors.append((item.name, item.reason))
    report.quarantined = len(batch.rejected)
    return report


def _quarantine(source: LogSource, database: Database, item: _Rejected) -> None:
    # The reason is committed before the file moves: a crash in between leaves the file to be
    # rejected again (same hash, one ingest_errors row), never a moved file without a reason.
    database.record_ingest_error(source.path_of(item.name), item.content_hash, item.reason, None)
    moved_to = source.quarantine(item.name)
    if moved_to:
        database.note_quarantined(item.content_hash, moved_to)
    logger.warning("quarantined %s: %s", item.name, item.reason)


def hash_file(path: str) -> str:
    """content_hash of a file, read in blocks: quarantined files can be far over MAX_LOG_BYTES."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
