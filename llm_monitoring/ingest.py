"""One ingest pass over a set of log files: read, detect, parse, price, evaluate, store, then move the files.

Plain Python on top of a LogSource and a Database; the Dagster op calls it, so the sensor,
the one-shot runner and the watcher all share this one code path.

Crash safety comes from the order of effects: the database commits a batch (runs with all
their checks) before any of its files is moved or its read position recorded. A crash before the
commit leaves nothing stored and every file in place; a crash after it leaves stored files in
place, and the next pass finds their runs' content hashes already stored and only moves them.

Isolation comes from the shape of the pass, not from a list of known faults: each file goes
through every stage up to encoding on its own, and so does each run of a file that holds several
(log_reading.py). Whatever one of them raises fails that file or run alone, with the exception as
its reason. If the database then refuses the batch for its values, the batch is stored again one
run at a time and only the run it refuses fails. What is not about one file (an outage, a full
disk, a lock) fails the pass, and the files stay in place for the retry.

A file is quarantined when nothing of it can be stored; a file holding several runs of which some
failed is processed, and each failed run is recorded in ingest_errors with where it is in the file.
Files holding JSON Lines stay where they are (an agent may be appending): the ledger records how
far they were read (file_offsets), and the next pass reads only complete lines added since.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from functools import partial

from llm_monitoring.config import Settings, get_settings
from llm_monitoring.core.records import ParseError, RunFailure
from llm_monitoring.core.wording import plural
from llm_monitoring.file_names import name_text
from llm_monitoring.ingest_pool import cycle_collector_paused, in_order
from llm_monitoring.log_reading import (
    Resume,
    build_run,
    content_hash,
    describe_failure,
    encode_runs,
    fallback_time,
    is_json_lines_name,
    offset_after,
    read_file_runs,
    resume_point,
    run_from_bytes,
)
from llm_monitoring.policies import Policies, load_policies
from llm_monitoring.sources import (
    FileChanged,
    Finished,
    LogFile,
    LogSource,
    NotALogFile,
    OutsideLogFolder,
    SourceUnavailable,
    SourceVersion,
)
from llm_monitoring.sources.base import FileVersion
from llm_monitoring.storage.bulk import BatchResult, EncodedRun, RunEncoder, run_encoder, store_encoded
from llm_monitoring.storage.cursors import FileOffset, quiet_traces, read_offsets, record_offsets
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import is_data_error
from llm_monitoring.storage.ledger import known_processed, note_quarantined, record_ingest_error
from llm_monitoring.traces import Assembly, assemble, keep_waiting, quiet_assembly

__all__ = ["IngestReport", "build_run", "content_hash", "describe_failure", "ingest_files", "pending_work", "run_from_bytes"]

logger = logging.getLogger("llm_monitoring.ingest")


@dataclass
class IngestReport:
    files_seen: int = 0
    bytes_read: int = 0
    stored: int = 0  # runs
    already_stored: int = 0  # runs
    quarantined: int = 0  # files
    failed_runs: int = 0  # runs of files that were processed (a bad line of JSON Lines, say)
    unsettled: int = 0
    missing: int = 0
    stored_ids: list[int] = field(default_factory=list)  # ascending, whatever order batches committed in
    errors: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of each quarantined file or failed run
    left_in_place: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of files neither moved nor quarantined

    def add(self, other: IngestReport) -> None:
        for name in ("files_seen", "bytes_read", "stored", "already_stored", "quarantined", "failed_runs", "unsettled", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        # Workers commit batches concurrently: a later batch can hold lower ids.
        self.stored_ids = sorted(self.stored_ids + other.stored_ids)
        self.errors += other.errors
        self.left_in_place += other.left_in_place

    def line(self) -> str:
        left = f", {len(self.left_in_place)} left in place" if self.left_in_place else ""
        failed = f", {plural(self.failed_runs, 'run')} failed" if self.failed_runs else ""
        return (
            f"{plural(self.files_seen, 'file')}: {self.stored} stored, {self.already_stored} already stored, "
            f"{self.quarantined} quarantined{failed}, {self.unsettled} still being written, {self.missing} gone{left}"
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


@dataclass(frozen=True)
class _Read:
    name: str
    version: SourceVersion
    raw: bytes
    mtime: float


@dataclass
class _FileDone:
    """A file whose runs are in the batch: moved once the batch commits, or, read in place, its offset recorded."""

    name: str
    version: SourceVersion
    digest: str  # content hash of the file's bytes (its ingest_errors key if none of its runs can be stored)
    keys: list[str]  # its runs' content hashes
    failures: list[RunFailure]
    spans: int  # spans of traces it held
    offset: FileOffset | None  # read in place (JSON Lines): the position to record instead of a move


@dataclass
class _StoredBatch:
    """A committed batch: what this process needs to move its files and record its failures."""

    report: IngestReport
    files: list[_FileDone] = field(default_factory=list)
    new_keys: set[str] = field(default_factory=set)  # runs stored by this batch (the rest were stored before)
    rejected: list[_Rejected] = field(default_factory=list)
    trace_failures: list[tuple[RunFailure, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """What a sensor tick or a watcher sees: files to read, and which of them to read now."""

    files: list[LogFile]
    ready: list[LogFile]  # settled, or read in place (a complete line is final, whatever the writer does next)
    quiet_traces: int  # traces whose waiting spans have been quiet for SETTLE_SECONDS: a pass completes them


def pending_work(source: LogSource, database: Database, settings: Settings, now: float | None = None) -> Pending:
    pending = source.list_pending(partial(known_processed, database))
    offsets = read_offsets(database, [name_text(log_file.name) for log_file in pending])
    settled_before = (time.time() if now is None else now) - settings.settle_seconds
    files: list[LogFile] = []
    ready: list[LogFile] = []
    for log_file in pending:
        offset = offsets.get(name_text(log_file.name))
        unchanged = _unchanged(log_file, offset)
        if unchanged and offset is not None and offset.bytes_read == offset.size:
            continue  # read to its end, and not written to since
        files.append(log_file)
        # New complete lines are final whatever the writer does next; a last line without its newline
        # (the only thing an unchanged file can still hold) waits for the file to settle.
        in_place = offset is not None or is_json_lines_name(log_file.name)
        if log_file.mtime <= settled_before or (in_place and not unchanged):
            ready.append(log_file)
    quiet = len(quiet_traces(database, datetime.fromtimestamp(settled_before, UTC)))
    return Pending(files, ready, quiet)


def _unchanged(log_file: LogFile, offset: FileOffset | None) -> bool:
    version = log_file.version
    if offset is None or version is None:
        return False
    return (offset.device, offset.inode, offset.size, offset.mtime_ns) == (version.device, version.inode, version.size, version.mtime_ns)


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
    whatever the number of files. A single batch runs here: no process to start. Traces that have
    been waiting quietly for SETTLE_SECONDS are completed at the end of the pass.

    `settled_only` leaves files modified less than SETTLE_SECONDS ago for a later pass even when they
    parse (the sensor and the watcher: a writer may rewrite a complete file several times). Files
    read in place (JSON Lines) are read anyway: a complete line is final.
    """
    settings = settings or get_settings()
    refused = [name for name in names or () if source.name_problem(name)]
    if refused:
        raise OutsideLogFolder(
            f"refusing {len(refused)} names that are not names of files in the log folder, "
            f"e.g. {name_text(refused[0])!r} ({source.name_problem(refused[0])}); nothing was read or moved"
        )
    if names is None and source.reads_in_place:
        names = [log_file.name for log_file in pending_work(source, database, settings).files]
    # Pending files, or the named ones the ledger does not hold (an object store's, known without a read).
    names, recorded = source.select_pending(database, names)
    batches = list(_chunks(list(names), settings.batch_files))
    work = partial(_store_batch, source, settings=settings, settled_only=settled_only)
    total = IngestReport(files_seen=recorded, already_stored=recorded)
    with cycle_collector_paused():
        for stored in in_order(work, database, batches, settings.workers):
            report = _finish_batch(source, database, stored)
            total.add(report)
            if on_batch:
                on_batch(report)
        total.add(_complete_quiet_traces(database, settings))
    return total


def _chunks(names: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


def _store_batch(source: LogSource, database: Database, names: list[str], *, settings: Settings, settled_only: bool) -> _StoredBatch:
    """Read, parse, price, evaluate and store a batch in one transaction; no file moves."""
    batch = _StoredBatch(IngestReport(files_seen=len(names)))
    report = batch.report
    encode = run_encoder(database)
    # Once per batch: a price file or redaction setting that cannot be used fails the batch, not each file.
    policies = load_policies()
    runs: dict[str, EncodedRun] = {}
    spans: list[tuple[dict, str]] = []
    offsets = read_offsets(database, [name_text(name) for name in names]) if source.reads_in_place else {}
    now = time.time()
    source.prefetch(names)  # a source that can read ahead (a bucket) starts its transfers now
    for name in names:
        offset = offsets.get(name_text(name))
        outcome = _read(source, name, settings, now, settled_only and offset is None and not is_json_lines_name(name))
        if isinstance(outcome, _Read):
            report.bytes_read += len(outcome.raw)
            outcome = _file_runs(source, outcome, offset, (encode, policies), settings, now, runs, spans)
        if isinstance(outcome, _FileDone):
            batch.files.append(outcome)
        elif outcome is _Skip.MISSING:
            report.missing += 1
        elif outcome is _Skip.UNSETTLED:
            report.unsettled += 1
        elif isinstance(outcome, _Rejected):
            batch.rejected.append(outcome)
        elif isinstance(outcome, _Left):
            report.left_in_place.append((name_text(outcome.name), outcome.why))
    traces = _assembled(database, spans, (encode, policies), runs)
    result, refused = _store_isolated(database, list(runs.values())) if runs else (BatchResult({}, set()), {})
    keep_waiting(database, traces)
    _settle_files(batch, refused)
    trace_keys = {run.key for run, _ in traces.runs} - {failure.key for failure, _ in traces.failures}
    traces.failures += [(RunFailure(key, "", refused[key]), "trace") for key in trace_keys & refused.keys()]
    batch.trace_failures = traces.failures
    batch.new_keys = set(result.inserted)
    report.stored = len(result.inserted)
    occurrences = sum(len(done.keys) for done in batch.files) + len(trace_keys - refused.keys())
    report.already_stored = max(occurrences - report.stored, 0)
    report.stored_ids = sorted(result.inserted.values())
    return batch


def _file_runs(
    source: LogSource,
    read: _Read,
    offset: FileOffset | None,
    preparing: tuple[RunEncoder, Policies],
    settings: Settings,
    now: float,
    runs: dict[str, EncodedRun],
    spans: list[tuple[dict, str]],
) -> _FileDone | _Rejected | _Skip:
    """Detect, parse, price, evaluate and encode one file's runs (added to `runs`), or why it cannot be stored."""
    digest = read.version.content_hash or content_hash(read.raw)
    # An object in a bucket is complete once listed; a file is when it has not changed for a while.
    settled = now - read.mtime >= settings.settle_seconds or not source.reads_in_place
    version = read.version
    resume = resume_point(read.raw, version.device, version.inode, offset) if isinstance(version, FileVersion) else Resume()
    try:
        file_read = read_file_runs(read.raw, read.name, resume, final=settled, fallback_time=fallback_time(read.mtime))
    except Exception as error:
        if not settled:
            return _Skip.UNSETTLED  # probably still being written: look again once it settles
        reason = error.reason if isinstance(error, ParseError) else describe_failure("parsing", error)
        return _Rejected(read.name, digest, reason, read.version)
    filepath = source.display(read.name)
    new_runs = [run for run in file_read.runs if run.key not in runs]
    encoded = encode_runs(new_runs, filepath, *preparing)
    for run in encoded.runs:
        runs[run.content_hash] = run
    failed = {failure.key for failure in encoded.failures}
    spans += [(span, filepath) for span in file_read.spans]
    position = None
    if isinstance(version, FileVersion) and (file_read.appendable or offset is not None):
        position = offset_after(name_text(read.name), read.raw, version.device, version.inode, version.mtime_ns, resume, file_read.consumed)
    return _FileDone(
        name=read.name,
        version=version,
        digest=digest,
        keys=[run.key for run in file_read.runs if run.key not in failed],
        failures=[*file_read.failures, *encoded.failures],
        spans=len(file_read.spans),
        offset=position,
    )


def _assembled(
    database: Database, spans: list[tuple[dict, str]], preparing: tuple[RunEncoder, Policies], runs: dict[str, EncodedRun]
) -> Assembly:
    """Runs of the traces this batch's spans complete, added to `runs`; their failures kept on the assembly."""
    traces = assemble(database, spans)
    for run, filepath in traces.runs:
        if run.key in runs:
            continue
        encoded = encode_runs([run], filepath, *preparing)
        runs.update((item.content_hash, item) for item in encoded.runs)
        traces.failures += [(failure, filepath) for failure in encoded.failures]
    return traces


def _settle_files(batch: _StoredBatch, refused: dict[str, str]) -> None:
    """Runs the database refused fail alone; a file none of whose runs could be stored is quarantined."""
    kept: list[_FileDone] = []
    for done in batch.files:
        done.failures += [RunFailure(key, _where_in(done, key), refused[key]) for key in done.keys if key in refused]
        done.keys = [key for key in done.keys if key not in refused]
        # A file read in place stays for the lines that follow; its bad lines are recorded one by one.
        if done.keys or done.spans or not done.failures or done.offset is not None:
            kept.append(done)
            continue
        batch.rejected.append(_Rejected(done.name, done.digest, _file_reason(done.failures), done.version))
    batch.files = kept


def _where_in(done: _FileDone, key: str) -> str:
    return "" if len(done.keys) == 1 else f"run {key[:12]}"


def _file_reason(failures: list[RunFailure]) -> str:
    first = failures[0]
    reason = f"{first.where}: {first.reason}" if first.where else first.reason
    if len(failures) == 1:
        return reason
    return f"none of its {len(failures)} runs could be stored; {reason} (and {plural(len(failures) - 1, 'more')})"


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
    """Move a committed batch's files out of the pending set (or record how far they were read), record
    its failed runs, then quarantine its rejects."""
    report = batch.report
    finished: list[Finished] = []
    offsets: list[FileOffset] = []
    try:
        for done in batch.files:
            if done.offset is not None:
                offsets.append(done.offset)
                continue
            try:
                moved_to = source.mark_processed(done.name, done.version, keep_name=not batch.new_keys.intersection(done.keys))
            except FileChanged as change:
                report.unsettled += 1  # its new content is read next pass; what was read is stored
                logger.info("%s", change)
                continue
            except OSError as error:
                why = f"stored, but not moved: {describe_failure('moving', error)}"
                report.left_in_place.append((name_text(done.name), why))
                logger.error("%s: %s", name_text(done.name), why)
                continue
            if moved_to:
                finished.append(Finished(done.name, done.version, done.digest, moved_to))
    finally:
        # Recorded even when a move failed: a moved file the ledger does not know would be taken
        # for a new one. A crash before this line is covered by mark_processed's keep_name.
        source.record_finished(database, finished)
        record_offsets(database, offsets)
    failures = [(source.display(done.name), failure) for done in batch.files for failure in done.failures]
    failures += [(filepath, failure) for failure, filepath in batch.trace_failures]
    _record_failed_runs(database, report, failures)
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


def _record_failed_runs(database: Database, report: IngestReport, failures: list[tuple[str, RunFailure]]) -> None:
    """Failed runs of files that were processed: their reasons in ingest_errors, keyed by the run's bytes."""
    for filepath, failure in failures:
        where = f"{filepath} ({failure.where})" if failure.where else filepath
        record_ingest_error(database, where, failure.key, failure.reason, None)
        report.errors.append((where, failure.reason))
        report.failed_runs += 1
        logger.warning("run not stored, %s: %s", where, failure.reason)


def _complete_quiet_traces(database: Database, settings: Settings) -> IngestReport:
    """Store the runs of traces whose spans have waited quietly for SETTLE_SECONDS: their writer is done."""
    report = IngestReport()
    traces = quiet_assembly(database, settings.settle_seconds)
    if not traces.completed:
        return report
    runs: dict[str, EncodedRun] = {}
    encode, policies = run_encoder(database), load_policies()
    for run, filepath in traces.runs:
        encoded = encode_runs([run], filepath, encode, policies)
        runs.update((item.content_hash, item) for item in encoded.runs)
        traces.failures += [(failure, filepath) for failure in encoded.failures]
    result, refused = _store_isolated(database, list(runs.values())) if runs else (BatchResult({}, set()), {})
    traces.failures += [(RunFailure(key, "", reason), "trace") for key, reason in refused.items()]
    keep_waiting(database, traces)
    report.stored = len(result.inserted)
    report.already_stored = len(result.already_stored)
    report.stored_ids = sorted(result.inserted.values())
    _record_failed_runs(database, report, [(filepath, failure) for failure, filepath in traces.failures])
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
