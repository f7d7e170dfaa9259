"""One log file's bytes -> the runs to store: its format detected, appended files resumed where the last
pass stopped, and each run priced, evaluated and encoded on its own.

Failures are isolated per run by construction: a line of JSON Lines or an element of an array that
cannot be read, priced, evaluated or encoded becomes a RunFailure with its reason, and the other runs
of the file are stored. A file none of whose runs can be stored is quarantined by the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_monitoring.core.evaluation import EVALUATOR_VERSION, evaluate_run
from llm_monitoring.core.formats import FileRead, read_json_lines, read_log
from llm_monitoring.core.parsing import PARSER_VERSION
from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import CheckResult, LogRecord, ParsedRun, PriceResult, RunFailure
from llm_monitoring.core.redaction import redact_run
from llm_monitoring.database_url import mask_url
from llm_monitoring.file_names import name_text
from llm_monitoring.policies import Policies, load_policies
from llm_monitoring.storage.bulk import EncodedRun, RunEncoder, RunToStore
from llm_monitoring.storage.cursors import FileOffset

MAX_REASON_CHARS = 600

# Names whose files are JSON Lines whatever their content: an agent appends to them.
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def is_json_lines_name(name: str) -> bool:
    return name.lower().endswith(JSON_LINES_SUFFIXES)


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def describe_failure(stage: str, error: BaseException) -> str:
    """A stored reason for a file or run that failed: the exception's class and message, and the stage, on one line."""
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps what the driver raised
    message = " ".join(str(cause).split()) or "(no message)"
    reason = name_text(mask_url(f"{type(cause).__name__} while {stage}: {message}"))
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


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
    policies: Policies | None = None,
) -> RunToStore:
    """A parsed run, priced and evaluated with the current rules and redacted: what one batch row holds.

    The one constructor of stored runs (the ingest, fake data and the tests use it), so redaction
    happens here and nothing reaches the database unredacted: the raw log, the record's texts and
    the checks' details, with the count per detector. The run is priced and judged on the log as
    written (`digest` stays the hash of the file's bytes); a later re-evaluation reads the stored,
    redacted log. `price` and `checks` are computed here unless the caller did (the ingest does
    each stage on its own, to name the stage that failed); `policies` (price file, redactor) are
    loaded from the settings unless given."""
    policies = policies or load_policies()
    price = price_run(record, policies.prices) if price is None else price
    checks = evaluate_run(record) if checks is None else checks
    redactions = None
    if policies.redactor.active:
        redacted = redact_run(policies.redactor, text, record, checks)
        text, record, checks, redactions = redacted.raw_json, redacted.record, redacted.checks, redacted.redaction.as_json()
    return RunToStore(
        filepath=filepath,
        content_hash=digest,
        raw_json=text,
        record=record,
        price=price,
        checks=checks,
        parser_version=PARSER_VERSION,
        evaluator_version=EVALUATOR_VERSION,
        origin=origin,
        created_at=created_at,
        redactions=redactions,
    )


def run_from_bytes(raw: bytes, filepath: str, *, fallback_time: datetime | None = None, **options: Any) -> RunToStore:
    """Parse, price and evaluate a one-run log's bytes exactly as the ingest does (raises ParseError)."""
    file_read = read_log(raw, name=filepath, final=True, fallback_time=fallback_time)
    if len(file_read.runs) != 1:
        raise ValueError(f"{filepath} holds {len(file_read.runs)} runs ({file_read.format}), not one")
    run = file_read.runs[0]
    return build_run(filepath, run.key, run.text, run.record, **{"origin": run.origin, **options})


@dataclass(frozen=True)
class Resume:
    """Where a pass starts reading a file: 0 for a file read from the start."""

    start: int = 0
    lines: int = 0


def resume_point(raw: bytes, device: int, inode: int, offset: FileOffset | None) -> Resume:
    """Where the last pass stopped, if the file is the one it read and its bytes up to there are
    unchanged; else the start (a rotated, truncated or rewritten file)."""
    if offset is None or (offset.device, offset.inode) != (device, inode) or len(raw) < offset.bytes_read:
        return Resume()
    if hashlib.sha256(memoryview(raw)[: offset.bytes_read]).hexdigest() != offset.prefix_hash:
        return Resume()
    return Resume(offset.bytes_read, offset.lines_read)


def read_file_runs(raw: bytes, name: str, resume: Resume, *, final: bool, fallback_time: datetime | None) -> FileRead:
    """Detect and read a file's runs, from `resume` on (raises ParseError when the file is unusable)."""
    if resume.start:
        return read_json_lines(
            memoryview(raw)[resume.start :].tobytes(), first_line=resume.lines + 1, final=final, fallback_time=fallback_time
        )
    return read_log(raw, name=name, final=final, fallback_time=fallback_time)


def offset_after(name: str, raw: bytes, device: int, inode: int, mtime_ns: int, resume: Resume, consumed: int) -> FileOffset:
    end = resume.start + consumed
    return FileOffset(
        name=name,
        device=device,
        inode=inode,
        size=len(raw),
        mtime_ns=mtime_ns,
        bytes_read=end,
        lines_read=resume.lines + raw.count(b"\n", resume.start, end),
        prefix_hash=hashlib.sha256(memoryview(raw)[:end]).hexdigest(),
    )


@dataclass
class EncodedRuns:
    """Runs ready for a batch, and the runs that could not be made ready, each with its reason."""

    runs: list[EncodedRun] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)


def encode_runs(runs: Iterable[ParsedRun], filepath: str, encode: RunEncoder, policies: Policies) -> EncodedRuns:
    """Price, evaluate, redact and encode each run on its own: whatever one raises fails that run alone."""
    result = EncodedRuns()
    for run in runs:
        stage = "pricing"
        try:
            price = price_run(run.record, policies.prices)
            stage = "evaluating"
            checks = evaluate_run(run.record)
            stage = "redacting and encoding"
            stored = build_run(filepath, run.key, run.text, run.record, origin=run.origin, price=price, checks=checks, policies=policies)
            result.runs.append(encode(stored))
        except Exception as error:
            result.failures.append(RunFailure(run.key, run.where, describe_failure(stage, error)))
    return result


def fallback_time(mtime: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(mtime, UTC)
    except (OverflowError, OSError, ValueError):
        return None
