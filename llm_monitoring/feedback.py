"""Reviewers' feedback on runs: save, update, delete, list, and import from CSV or JSON Lines.

Seed-compatible::

    from llm_monitoring.db import Database
    from llm_monitoring.feedback import save_feedback
    db = Database(); db.ensure_schema()
    save_feedback(db, log_id=1, is_good=True, comments="Looks good", reference_answer=None)
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llm_monitoring.core.records import Feedback
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.feedback import (
    MissingRuns,
    delete_feedback_row,
    existing_log_ids,
    feedback_signatures,
    get_feedback_row,
    insert_feedback,
    list_feedback_rows,
    update_feedback_row,
)
from llm_monitoring.storage.schema import MAX_ID

FIELDS = ("log_id", "is_good", "comments", "reference_answer", "reviewer")
_GOOD_WORDS = {"true", "1", "yes", "y", "good", "👍", "+1", "up"}
_BAD_WORDS = {"false", "0", "no", "n", "bad", "👎", "-1", "down"}
# Far beyond any review (a spreadsheet cell holds 32,767 characters), and a bound on what one field
# of an imported file can put in the database.
MAX_TEXT_CHARS = 1_000_000


class FeedbackError(Exception):
    """Feedback that cannot be stored; the message says why."""


class InvalidFeedback(FeedbackError, TypeError):
    """A value of the wrong type (or an unusable value) was given."""


class RunNotFound(FeedbackError, LookupError):
    def __init__(self, log_id: int) -> None:
        self.log_id = log_id
        super().__init__(f"run #{log_id} does not exist in llm_logs; no feedback was stored")


class FeedbackNotFound(FeedbackError, LookupError):
    def __init__(self, feedback_id: int) -> None:
        self.feedback_id = feedback_id
        super().__init__(f"feedback #{feedback_id} does not exist")


@dataclass(frozen=True)
class FeedbackEntry:
    id: int
    log_id: int
    is_good: bool
    comments: str | None
    reference_answer: str | None
    reviewer: str | None
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FeedbackEntry:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    stored_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)

    def line(self) -> str:
        return f"{len(self.stored_ids)} stored, {self.duplicates} already stored, {len(self.errors)} rejected"


# ---------------------------------------------------------------------------- validation


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr (which escapes lone surrogates), cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _id(value: Any, name: str) -> int:
    # bool is an int in Python, and True is never meant as run #1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFeedback(f"{name} must be an integer, got {type(value).__name__} {_shown(value)}")
    if value < 1:
        raise InvalidFeedback(f"{name} must be a positive integer, got {_shown(value)}")
    if value > MAX_ID:
        raise InvalidFeedback(f"{name} {_shown(value, 30)} is beyond the largest id the database holds ({MAX_ID})")
    return value


# Plain ASCII digits, optionally after '#': str.isdigit() also accepts '²', and int() accepts
# '٤٢', '1_000' and ' +42 ', none of them an id anyone wrote.
_ID_TEXT = re.compile(r"#?([0-9]+)")


def parse_id(text: str, name: str = "log_id") -> int:
    """A row id written as text ("42" or "#42"), checked like any id: the command line's LOG_ID and an
    imported file's log_id column. InvalidFeedback says what is wrong with it."""
    stripped = text.strip()
    match = _ID_TEXT.fullmatch(stripped)
    if not stripped:
        raise InvalidFeedback(f"{name} is missing")
    if match is None:
        if _ID_TEXT.fullmatch(stripped.removeprefix("-")):
            raise InvalidFeedback(f"{name} must be a positive integer, got {_shown(text)}")
        if any(character.isdigit() and not character.isascii() for character in stripped):
            raise InvalidFeedback(f"{name} must be an integer written with the digits 0-9, got {_shown(text)}")
        raise InvalidFeedback(f"{name} must be an integer, got {_shown(text)}")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:  # the length first: int() refuses 4,301 digits
        raise InvalidFeedback(f"{name} {_shown(stripped, 30)} is beyond the largest id the database holds ({MAX_ID})")
    return _id(int(digits), name)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidFeedback(f"{name} must be True or False, got {type(value).__name__} {_shown(value)}")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _optional_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFeedback(f"{name} must be a string or None, got {type(value).__name__} {_shown(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidFeedback(f"{name} has {len(value):,} characters; at most {MAX_TEXT_CHARS:,} are stored")
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise InvalidFeedback(
            f"{name} contains a lone surrogate (U+{ord(surrogate.group()):04X} at character {surrogate.start() + 1:,}), "
            "which no text encoding can store"
        )
    # A form's empty box means "nothing to say", not an empty comment.
    return value if value.strip() else None


def validate_feedback(log_id: Any, is_good: Any, comments: Any = None, reference_answer: Any = None, reviewer: Any = None) -> Feedback:
    """A Feedback record, or InvalidFeedback naming the first bad argument."""
    return Feedback(
        log_id=_id(log_id, "log_id"),
        is_good=_flag(is_good, "is_good"),
        comments=_optional_text(comments, "comments"),
        reference_answer=_optional_text(reference_answer, "reference_answer"),
        reviewer=_optional_text(reviewer, "reviewer"),
    )


def _row(entry: Feedback) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in FIELDS}


# ---------------------------------------------------------------------------- API


def save_feedback(
    db: Database,
    log_id: int,
    is_good: bool,
    comments: str | None = None,
    reference_answer: str | None = None,
    reviewer: str | None = None,
) -> int:
    """Store one feedback on run `log_id` and return its id.

    Raises InvalidFeedback for wrong types and RunNotFound when the run is not stored; in both
    cases nothing is written.
    """
    entry = validate_feedback(log_id, is_good, comments, reference_answer, reviewer)
    try:
        return insert_feedback(db, [_row(entry)])[0]
    except MissingRuns:
        raise RunNotFound(entry.log_id) from None


_UNCHANGED: Any = object()


def update_feedback(
    db: Database,
    feedback_id: int,
    *,
    is_good: bool = _UNCHANGED,
    comments: str | None = _UNCHANGED,
    reference_answer: str | None = _UNCHANGED,
    reviewer: str | None = _UNCHANGED,
) -> FeedbackEntry:
    """Change the given fields of one feedback (None clears a text field); returns the stored entry."""
    _id(feedback_id, "feedback_id")
    values: dict[str, Any] = {}
    if is_good is not _UNCHANGED:
        values["is_good"] = _flag(is_good, "is_good")
    for name, value in (("comments", comments), ("reference_answer", reference_answer), ("reviewer", reviewer)):
        if value is not _UNCHANGED:
            values[name] = _optional_text(value, name)
    if not values:
        row = get_feedback_row(db, feedback_id)
    else:
        row = update_feedback_row(db, feedback_id, values)
    if row is None:
        raise FeedbackNotFound(feedback_id)
    return FeedbackEntry.from_row(row)


def delete_feedback(db: Database, feedback_id: int) -> None:
    if not delete_feedback_row(db, _id(feedback_id, "feedback_id")):
        raise FeedbackNotFound(feedback_id)


def get_feedback(db: Database, feedback_id: int) -> FeedbackEntry:
    row = get_feedback_row(db, _id(feedback_id, "feedback_id"))
    if row is None:
        raise FeedbackNotFound(feedback_id)
    return FeedbackEntry.from_row(row)


def list_feedback(db: Database, log_id: int | None = None, *, reviewer: str | None = None, limit: int | None = 100) -> list[FeedbackEntry]:
    """Feedback newest first: all of it, or of one run, or of one reviewer."""
    if log_id is not None:
        _id(log_id, "log_id")
    reviewer = _optional_text(reviewer, "reviewer")
    rows = list_feedback_rows(db, log_id=log_id, reviewer=reviewer, limit=limit)
    return [FeedbackEntry.from_row(row) for row in rows]


# ---------------------------------------------------------------------------- import


def import_feedback(db: Database, path: str | Path) -> ImportReport:
    """Import a .csv (with a header) or .jsonl file of feedback.

    Columns/keys: log_id, is_good (true/false, yes/no, good/bad, 1/0, 👍/👎), and optional comments,
    reference_answer, reviewer. Bad rows are reported by line number; the good ones are stored in
    one transaction. A row equal to stored feedback is skipped, so importing a file twice is harmless.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path)
    else:
        raise FeedbackError(f"{path.name}: expected a .csv or .jsonl file")

    report = ImportReport()
    valid: list[tuple[int, Feedback]] = []
    for line, fields in rows:
        if isinstance(fields, RowError):
            report.errors.append(fields)
            continue
        try:
            valid.append((line, _feedback_from_fields(fields)))
        except InvalidFeedback as error:
            report.errors.append(RowError(line, str(error)))

    known = existing_log_ids(db, (entry.log_id for _line, entry in valid))
    stored = feedback_signatures(db, known)
    to_store: list[Feedback] = []
    for line, entry in valid:
        if entry.log_id not in known:
            report.errors.append(RowError(line, f"run #{entry.log_id} does not exist in llm_logs"))
            continue
        signature = tuple(_row(entry).values())
        if signature in stored:
            report.duplicates += 1
            continue
        stored.add(signature)
        to_store.append(entry)
    report.errors.sort(key=lambda error: error.line)
    try:
        report.stored_ids = insert_feedback(db, [_row(entry) for entry in to_store])
    except MissingRuns as error:
        # A run was deleted while the file was read: store nothing rather than guess which rows.
        raise FeedbackError(f"runs deleted during the import: {error}; nothing was stored") from None
    return report


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _refuse_utf16(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(2) in _UTF16_BOMS:
            raise FeedbackError(f'{path.name}: the file is UTF-16 text; save it as UTF-8 ("CSV UTF-8") and import again')


@contextmanager
def _no_csv_field_limit() -> Iterator[None]:
    # The csv module refuses a field over 131,072 characters and, after that error, resumes reading
    # in the middle of the field, so its remainder would be taken for rows. Lift the limit while
    # reading (the file is ours to read whole) and let validation refuse a too-long value by its line.
    previous = csv.field_size_limit(2**31 - 1)  # the largest a C long holds everywhere
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# Bytes that are not UTF-8 are read as lone surrogates U+DC80..U+DCFF (the surrogateescape error
# handler), so a bad byte spoils only the row it is in.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _not_utf8(values: Mapping[str, str]) -> str | None:
    for name, value in values.items():
        bad = _UNDECODABLE.search(value)
        if bad:
            return f"not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02X} in {_shown(name, 40)}); save the file as UTF-8"
    return None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    _refuse_utf16(path)
    with _no_csv_field_limit(), path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as error:
            raise FeedbackError(f"{path.name}: line 1: unreadable header ({error})") from None
        if header is None:
            return
        names = [name.strip().lower() for name in header]
        if _not_utf8(dict(zip(names, names, strict=True))):
            raise FeedbackError(f"{path.name}: line 1: the header is not valid UTF-8; save the file as UTF-8")
        missing = [name for name in ("log_id", "is_good") if name not in names]
        if missing:
            shown = ", ".join(_shown(name, 40) for name in names[:20])
            raise FeedbackError(f"{path.name}: line 1: the header lacks {', '.join(missing)} (it has: {shown})")
        repeated = sorted({name for name in names if names.count(name) > 1 and name})
        if repeated:
            raise FeedbackError(f"{path.name}: line 1: the header names {', '.join(map(_shown, repeated))} more than once")
        start = reader.line_num + 1
        while True:
            line = start
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                start = reader.line_num + 1
                yield line, RowError(line, f"unreadable CSV ({error})")
                continue
            start = reader.line_num + 1
            if not any(value.strip() for value in values):
                continue
            if len(values) > len(names):
                yield line, RowError(line, f"{len(values)} values for {len(names)} columns")
                continue
            fields = dict(zip(names, values, strict=False))  # a short row leaves its last fields out
            problem = _not_utf8(fields)
            yield line, RowError(line, problem) if problem else fields


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    _refuse_utf16(path)
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if line == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield (
                    line,
                    RowError(line, f"not valid UTF-8 (byte 0x{raw[error.start]:02X} at column {error.start + 1}); save the file as UTF-8"),
                )
                continue
            if not text.strip():
                continue
            try:
                document = json.loads(text)
            except json.JSONDecodeError as error:
                yield line, RowError(line, f"invalid JSON: {error.msg} (column {error.colno})")
                continue
            except RecursionError:
                yield line, RowError(line, "invalid JSON: nested too deeply")
                continue
            except ValueError as error:  # a number of more than 4,300 digits
                yield line, RowError(line, f"invalid JSON: {str(error).split(';')[0]}")
                continue
            if not isinstance(document, dict):
                yield line, RowError(line, f"expected a JSON object, got {type(document).__name__}")
                continue
            yield line, document


def _feedback_from_fields(fields: Mapping[str, Any]) -> Feedback:
    unknown = sorted(set(fields) - set(FIELDS) - {"id", "created_at"})
    if unknown:
        shown = ", ".join(_shown(name, 40) for name in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise InvalidFeedback(f"unknown field(s) {shown}; expected {', '.join(FIELDS)}")
    log_id = fields.get("log_id")
    if isinstance(log_id, str):
        log_id = parse_id(log_id, "log_id")
    elif log_id is None:
        raise InvalidFeedback("log_id is missing")
    is_good = fields.get("is_good")
    if isinstance(is_good, str):
        word = is_good.strip().lower()
        if word in _GOOD_WORDS:
            is_good = True
        elif word in _BAD_WORDS:
            is_good = False
        elif not word:
            raise InvalidFeedback("is_good is missing")
        else:
            raise InvalidFeedback(f"is_good must be true/false (or yes/no, good/bad, 1/0), got {_shown(is_good)}")
    elif isinstance(is_good, int) and not isinstance(is_good, bool) and is_good in (0, 1):
        is_good = bool(is_good)
    elif is_good is None:
        raise InvalidFeedback("is_good is missing")
    return validate_feedback(log_id, is_good, fields.get("comments"), fields.get("reference_answer"), fields.get("reviewer"))
