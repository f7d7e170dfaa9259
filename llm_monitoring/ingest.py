"""One ingest pass over a set of log files: read, parse, price, evaluate, store, then move the files.

Plain Python on top of a LogSource and a Database; the Dagster op calls it, so the sensor,
the one-shot runner and the watcher all share this one code path.

Crash safety comes from the order of effects: the database commits a batch (logs with all
their checks) before any of its files is moved. A crash before the commit leaves nothing
stored and every file in place; a crash after it leaves stored files in place, and the next
pass finds their content hash already stored and only moves them.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from collections import deque
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
    stored_ids: list[int] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in ("files_seen", "bytes_read", "stored", "already_stored", "quarantined", "unsettled", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stored_ids += other.stored_ids
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

    With more than one batch, batches are pipelined over the machine's cores: a worker process
    reads, parses, prices and evaluates the next batches while this process writes the current
    one and moves its files. At most two prepared batches wait, so memory stays bounded whatever
    the number of files. A single batch is prepared here: no process to start.
    """
    settings = settings or get_settings()
    if names is None:
        names = [log_file.name for log_file in source.list_pending(database.known_processed)]
    batches = list(_chunks(list(names), settings.batch_files))
    total = IngestReport()
    for prepared in _prepared_batches(source, batches, settings):
        report = _commit_batch(source, database, prepared)  # a failed write stops the pass here
        total.add(report)
        if on_batch:
            on_batch(report)
    return total


def _prepared_batches(source: LogSource, batches: list[list[str]], settings: Settings) -> Iterator[_PreparedBatch]:
    if len(batches) < 2 or (os.cpu_count() or 1) < 2:
        for batch in batches:
            yield _prepare_batch(source, batch, settings)
        return
    # fork: the worker inherits the imported modules, so it starts in milliseconds.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as preparer:
        waiting: deque[Future[_PreparedBatch]] = deque()
        for batch in batches:
            waiting.append(preparer.submit(_prepare_batch, source, batch, settings))
            if len(waiting) > 2:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()


def _chunks(names: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start:start + size]


@dataclass
class _PreparedBatch:
    report: IngestReport
    runs: dict[str, RunToStore] = field(default_factory=dict)
    files_by_hash: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[_Rejected] = field(default_factory=list)


def _prepare_batch(source: LogSource, names: list[str], settings: Settings) -> _PreparedBatch:
    """Read, parse, price and evaluate a batch: no database, no file moves."""
    batch = _PreparedBatch(IngestReport(files_seen=len(names)))
    report, runs, files_by_hash, rejected = batch.report, batch.runs, batch.files_by_hash, batch.rejected
    now = time.time()
    for name in names:
        log_file = source.stat(name)
        if log_file is None:
            report.missing += 1
            continue
        if log_file.size > settings.max_log_bytes:
            reason = f"file is {log_file.size} bytes, over MAX_LOG_BYTES={settings.max_log_bytes}"
            rejected.append(_Rejected(name, _hash_large_file(source, name), reason))
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
    return batch


def _commit_batch(source: LogSource, database: Database, batch: _PreparedBatch) -> IngestReport:
    """Store a prepared batch in one transaction, then move its files and quarantine the rejects."""
    report, runs, files_by_hash = batch.report, batch.runs, batch.files_by_hash
    if runs:
        result = database.store_runs(list(runs.values()))
        report.stored = len(result.inserted)
        report.already_stored = sum(len(files_by_hash[digest]) for digest in runs) - report.stored
        report.stored_ids = sorted(result.inserted.values())
    moves = []
    for digest in runs:
        for name in files_by_hash[digest]:
            moved_to = source.mark_processed(name)
            if moved_to:
                moves.append((name, source.relative(moved_to), digest))
    # A crash before this line leaves a moved file unrecorded: with prefix marking the next pass
    # reads it again, finds its content stored and moves it once more. Nothing is lost or doubled.
    database.record_processed(moves)
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


def _hash_large_file(source: LogSource, name: str) -> str:
    digest = hashlib.sha256()
    with open(source.path_of(name), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
