"""One ingest pass over a set of log files: read, parse, price, evaluate, store, then move the files.

Plain Python on top of a LogSource and a Database; the Dagster op calls it, so the sensor,
the one-shot runner and the watcher all share this one code path.

Crash safety comes from the order of effects: the database commits a batch (logs with all
their checks) before any of its files is moved. A crash before the commit leaves nothing
stored and every file in place; a crash after it leaves stored files in place, and the next
pass finds their content hash already stored and only moves them.

Isolation comes from the shape of the pass, not from a list of known faults: each file goes
through every stage up to encoding on its own, and whatever one of them raises for that file
quarantines that file alone, with the exception as its reason. If the database then refuses the
batch for its values, the batch is stored again one run at a time and only the run it refuses is
quarantined. What is not about one file (an outage, a full disk, a lock) fails the pass, and the
files stay in place for the retry.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from llm_monitoring.config import Settings, get_settings
from llm_monitoring.core.evaluation import EVALUATOR_VERSION, evaluate_run
from llm_monitoring.core.parsing import PARSER_VERSION, parse_log_bytes
from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import CheckResult, LogRecord, ParseError, PriceResult
from llm_monitoring.core.wording import plural
from llm_monitoring.database_url import mask_url
from llm_monitoring.file_names import name_text
from llm_monitoring.sources import FileChanged, Finished, LogSource, NotALogFile, OutsideLogFolder, SourceUnavailable, SourceVersion
from llm_monitoring.storage.bulk import BatchResult, EncodedRun, RunEncoder, RunToStore, run_encoder, store_encoded
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import is_data_error
from llm_monitoring.storage.ledger import note_quarantined, record_ingest_error

logger = logging.getLogger("llm_monitoring.ingest")

MAX_REASON_CHARS = 600


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
    errors: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of each quarantined file
    left_in_place: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of files neither moved nor quarantined

    def add(self, other: IngestReport) -> None:
        for name in ("files_seen", "bytes_read", "stored", "already_stored", "quarantined", "unsettled", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        # Workers commit batches concurrently: a later batch can hold lower ids.
        self.stored_ids = sorted(self.stored_ids + other.stored_ids)
        self.errors += other.errors
        self.left_in_place += other.left_in_place

    def line(self) -> str:
        left = f", {len(self.left_in_place)} left in place" if self.left_in_place else ""
        return (
            f"{plural(self.files_seen, 'file')}: {self.stored} stored, {self.already_stored} already stored, "
            f"{self.quarantined} quarantined, {self.unsettled} still being written, {self.missing} gone{left}"
        )


@dataclass(frozen=True)
class _Rejected:
    """A file to quarantine, with the reason stored for it."""

    name: str
    key: str  # content hash, or entry_key for an entry that could not be read
    reason: str
    version: SourceVersion | None


@dataclass(frozen=True)
class _Left:
    """An entry to leave where it is (a folder named like a log), with why."""

    name: str
    why: str


class _Skip(Enum):
    MISSING = "gone since it was listed"
    UNSETTLED = "still being written"


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
    price: PriceResult | None = None,
    checks: Sequence[CheckResult] | None = None,
) -> RunToStore:
    """A parsed run, priced and evaluated with the current rules: what one batch row holds.

    `price` and `checks` are computed here unless the caller did (the ingest does each stage on its
    own, to name the stage that failed)."""
    return RunToStore(
        filepath=filepath,
        content_hash=digest,
        raw_json=text,
        record=record,
        price=price_run(record) if price is None else price,
        checks=evaluate_run(record) if checks is None else checks,
        parser_version=PARSER_VERSION,
        evaluator_version=EVALUATOR_VERSION,
        origin=origin,
        created_at=created_at,
    )


def run_from_bytes(raw: bytes, filepath: str, *, fallback_time: datetime | None = None, **options: object) -> RunToStore:
    """Parse, price and evaluate a log's bytes exactly as the ingest does (raises ParseError)."""
    text, record = parse_log_bytes(raw, fallback_time=fallback_time)
    return build_run(filepath, content_hash(raw), text, record, **options)  # type: ignore[arg-type]


def describe_failure(stage: str, error: BaseException) -> str:
    """A stored reason for a file that failed: the exception's class and message, and the stage, on one line."""
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps what the driver raised
    message = " ".join(str(cause).split()) or "(no message)"
    reason = name_text(mask_url(f"{type(cause).__name__} while {stage}: {message}"))
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


def ingest_files(
    source: LogSource,
    database: Database,
    names: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    settled_only: bool = False,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Ingest the named files (all pending ones when `names` is None), one transaction per batch.

    With more than one batch, batches run in worker processes (INGEST_WORKERS, one per core): each
    reads, parses, prices, evaluates and stores a batch on its own connection, while this process
    moves the files of committed batches, in order. At most one batch per worker waits, so memory stays bounded
    whatever the number of files. A single batch runs here: no process to start.

    `settled_only` leaves files modified less than SETTLE_SECONDS ago for a later pass even when they
    parse (the sensor and the watcher: a writer may rewrite a complete file several times).
    """
    settings = settings or get_settings()
    refused = [name for name in names or () if source.name_problem(name)]
    if refused:
        raise OutsideLogFolder(
            f"refusing {len(refused)} names that are not names of files in the log folder, "
            f"e.g. {name_text(refused[0])!r} ({source.name_problem(refused[0])}); nothing was read or moved"
        )
    # Pending files, or the named ones the ledger does not hold (an object store's, known without a read).
    names, recorded = source.select_pending(database, names)
    batches = list(_chunks(names, settings.batch_files))
    total = IngestReport(files_seen=recorded, already_stored=recorded)
    with _cycle_collector_paused():
        for stored in _stored_batches(source, database, batches, settings, settled_only):
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


def _stored_batches(
    source: LogSource, database: Database, batches: list[list[str]], settings: Settings, settled_only: bool
) -> Iterator[_StoredBatch]:
    """Store each batch (a failed write stops the pass there) and yield them in order."""
    workers = min(settings.workers, len(batches))
    if workers < 2 or database.in_memory or "fork" not in multiprocessing.get_all_start_methods():
        for batch in batches:
            yield _store_batch(source, database, batch, settings, settled_only)
        return
    # fork: workers inherit the imported modules, so they start in milliseconds. Each opens its own
    # connection: the unique content hash keeps concurrent batches exactly-once, as with two runners.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        waiting: deque[Future[_StoredBatch]] = deque()
        for batch in batches:
            waiting.append(pool.submit(_store_batch_in_worker, source, database.url, batch, settings, settled_only))
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
        yield names[start : start + size]


@dataclass
class _StoredBatch:
    """A committed batch: what this process needs to move its files and quarantine its rejects."""

    report: IngestReport
    files_by_hash: dict[str, list[tuple[str, SourceVersion]]] = field(default_factory=dict)
    new_hashes: set[str] = field(default_factory=set)  # stored by this batch (the rest were stored before)
    rejected: list[_Rejected] = field(default_factory=list)


_worker_databases: dict[str, Database] = {}

_PR_SET_PDEATHSIG = 1


def _start_worker(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group. A worker killed mid-batch would break the pool, and the
    # step would be retried; ignoring it lets running batches commit while the parent stops the pass.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its parent (SIGKILL, the OOM killer, a terminated run): each holds
    memory and a database connection, and a forked worker never sees its task pipe close, since
    every worker inherited its write end. Linux sends the parent's death as SIGKILL; elsewhere a
    thread watches for the worker being re-parented. (Linux signals the death of the forking
    *thread*: the pool is created and shut down by the thread running the pass, which so outlives
    its workers.)"""
    try:
        armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (AttributeError, OSError):
        armed = False
    if not armed:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True, name="parent-watch").start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _store_batch_in_worker(source: LogSource, url: str, names: list[str], settings: Settings, settled_only: bool) -> _StoredBatch:
    database = _worker_databases.get(url)
    if database is None:
        database = _worker_databases[url] = Database(url)
        # Close the connection cleanly when the worker exits, instead of dropping it.
        multiprocessing.util.Finalize(database, database.dispose, exitpriority=10)
    return _store_batch(source, database, names, settings, settled_only)


@dataclass(frozen=True)
class _Read:
    name: str
    version: SourceVersion
    raw: bytes
    mtime: float


def _store_batch(source: LogSource, database: Database, names: list[str], settings: Settings, settled_only: bool) -> _StoredBatch:
    """Read, parse, price, evaluate and store a batch in one transaction; no file moves."""
    batch = _StoredBatch(IngestReport(files_seen=len(names)))
    report = batch.report
    encode = run_encoder(database)
    runs: dict[str, EncodedRun] = {}
    now = time.time()
    source.prefetch(names)  # a source that can read ahead (a bucket) starts its transfers now
    for name in names:
        outcome = _read(source, name, settings, now, settled_only)
        if isinstance(outcome, _Read):
            read = outcome
            report.bytes_read += len(read.raw)
            digest = read.version.content_hash or content_hash(read.raw)
            if digest in batch.files_by_hash:
                batch.files_by_hash[digest].append((name, read.version))
                continue
            outcome = _encoded(source, read, digest, encode, settings, now)
            if isinstance(outcome, EncodedRun):
                runs[digest] = outcome
                batch.files_by_hash[digest] = [(name, read.version)]
                continue
        if outcome is _Skip.MISSING:
            report.missing += 1
        elif outcome is _Skip.UNSETTLED:
            report.unsettled += 1
        elif isinstance(outcome, _Rejected):
            batch.rejected.append(outcome)
        elif isinstance(outcome, _Left):
            report.left_in_place.append((name_text(outcome.name), outcome.why))
    if runs:
        result, refused = _store_isolated(database, list(runs.values()))
        for digest, reason in refused.items():
            for name, version in batch.files_by_hash.pop(digest):
                batch.rejected.append(_Rejected(name, digest, reason, version))
        batch.new_hashes = set(result.inserted)
        report.stored = len(result.inserted)
        report.already_stored = sum(len(files) for files in batch.files_by_hash.values()) - report.stored
        report.stored_ids = sorted(result.inserted.values())
    return batch


def _read(source: LogSource, name: str, settings: Settings, now: float, settled_only: bool) -> _Read | _Rejected | _Left | _Skip:
    """The file's bytes, or what to do with it instead."""
    stage = "checking the file"
    log_file = None
    try:
        log_file = source.stat(name)
        if log_file is None:
            return _Skip.MISSING
        if log_file.kind == "folder":
            return _Left(name, "a folder, not a log file: left alone")
        if settled_only and now - log_file.mtime < settings.settle_seconds:
            return _Skip.UNSETTLED
        if log_file.kind != "file":
            return _Rejected(name, source.entry_key(name), f"not a regular file: a {log_file.kind}", log_file.version)
        if log_file.size > settings.max_log_bytes:
            reason = f"file is {log_file.size} bytes, over MAX_LOG_BYTES={settings.max_log_bytes}"
            return _Rejected(name, source.entry_key(name), reason, log_file.version)
        stage = "reading"
        read = source.read(name)
        return _Read(name, read.version, read.raw, read.version.mtime_ns / 1e9)
    except FileNotFoundError:
        return _Skip.MISSING
    except FileChanged:
        return _Skip.UNSETTLED  # written to while it was read: look again once it settles
    except NotALogFile as error:
        return _Rejected(name, _key_of_unread(source, name), str(error), log_file.version if log_file else None)
    except SourceUnavailable:
        raise  # not about this file: the pass fails and every file stays pending
    except Exception as error:
        return _Rejected(name, _key_of_unread(source, name), describe_failure(stage, error), log_file.version if log_file else None)


def _key_of_unread(source: LogSource, name: str) -> str:
    try:
        return source.entry_key(name)
    except Exception as error:
        return hashlib.sha256(f"{type(error).__name__}\0{name_text(name)}".encode()).hexdigest()


def _encoded(
    source: LogSource, read: _Read, digest: str, encode: RunEncoder, settings: Settings, now: float
) -> EncodedRun | _Rejected | _Skip:
    """Parse, price, evaluate and encode one file's run, or the reason it cannot be stored."""
    stage = "parsing"
    try:
        text, record = parse_log_bytes(read.raw, fallback_time=_fallback_time(read.mtime))
        stage = "pricing"
        price = price_run(record)
        stage = "evaluating"
        checks = evaluate_run(record)
        stage = "encoding"
        encoded = encode(build_run(source.display(read.name), digest, text, record, price=price, checks=checks))
    except Exception as error:
        if stage == "parsing" and now - read.mtime < settings.settle_seconds:
            return _Skip.UNSETTLED  # probably still being written: look again once it settles
        reason = error.reason if isinstance(error, ParseError) else describe_failure(stage, error)
        return _Rejected(read.name, digest, reason, read.version)
    return encoded


def _fallback_time(mtime: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(mtime, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _store_isolated(database: Database, runs: list[EncodedRun]) -> tuple[BatchResult, dict[str, str]]:
    """Store runs in one transaction; if the database refuses them for their values, store them one
    at a time and return the reason of each it refuses. Anything else (an outage) is raised."""
    try:
        return store_encoded(database, runs), {}
    except Exception as error:
        if not is_data_error(error):
            raise
        logger.warning(
            "the database refused a batch of %d runs (%s); storing them one at a time", len(runs), describe_failure("storing", error)
        )
    inserted: dict[str, int] = {}
    already: set[str] = set()
    refused: dict[str, str] = {}
    for run in runs:
        try:
            result = store_encoded(database, [run])
        except Exception as error:
            if not is_data_error(error):
                raise
            refused[run.content_hash] = describe_failure("storing", error)
            continue
        inserted.update(result.inserted)
        already |= result.already_stored
    return BatchResult(inserted, already), refused


def _finish_batch(source: LogSource, database: Database, batch: _StoredBatch) -> IngestReport:
    """Move a committed batch's files out of the pending set, then quarantine its rejects."""
    report = batch.report
    finished: list[Finished] = []
    try:
        for digest, files in batch.files_by_hash.items():
            for name, version in files:
                try:
                    moved_to = source.mark_processed(name, version, keep_name=digest not in batch.new_hashes)
                except FileChanged as change:
                    report.unsettled += 1  # its new content is read next pass; what was read is stored
                    logger.info("%s", change)
                    continue
                except OSError as error:
                    why = f"stored, but not moved: {describe_failure('moving', error)}"
                    report.left_in_place.append((name_text(name), why))
                    logger.error("%s: %s", name_text(name), why)
                    continue
                if moved_to:
                    finished.append(Finished(name, version, digest, moved_to))
    finally:
        # Recorded even when a move failed: a moved file the ledger does not know would be taken
        # for a new one. A crash before this line is covered by mark_processed's keep_name.
        source.record_finished(database, finished)
    for item in batch.rejected:
        try:
            _quarantine(source, database, item)
        except FileChanged as change:
            report.unsettled += 1
            logger.info("%s", change)
            continue
        except OSError as error:
            why = f"quarantine failed ({item.reason}): {describe_failure('moving', error)}"
            report.left_in_place.append((name_text(item.name), why))
            logger.error("%s: %s", name_text(item.name), why)
            continue
        report.errors.append((name_text(item.name), item.reason))
        report.quarantined += 1
    return report


def _quarantine(source: LogSource, database: Database, item: _Rejected) -> None:
    # The reason is committed before the file moves: a crash in between leaves the file to be
    # rejected again (same hash, one ingest_errors row), never a moved file without a reason.
    record_ingest_error(database, source.display(item.name), item.key, item.reason, None)
    moved_to = source.quarantine(item.name, item.version)
    if moved_to:
        note_quarantined(database, item.key, name_text(moved_to))
    source.record_finished(database, [Finished(item.name, item.version, item.key, moved_to, quarantined=True)])
    logger.warning("quarantined %s: %s", name_text(item.name), item.reason)
