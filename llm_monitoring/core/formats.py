"""Log files -> runs: what a file holds (its format, detected from its content), then each run in it
with its identity.

Formats (the names are stable: `inspect` shows them and quarantine reasons quote them):
- "run log": one JSON object with a `messages` list, as a course's logger writes it (core/parsing.py);
- "pydantic-ai message history": a JSON array of messages (`kind` request/response), as
  `result.all_messages_json()` or `ModelMessagesTypeAdapter.dump_json` writes it;
- "JSON array of runs": a JSON array whose elements are run logs, histories or OTLP requests;
- "JSON Lines": one of those per line (`*.jsonl`, `*.ndjson`, or a `.json` file holding several JSON
  values one per line, as the OpenTelemetry Collector's file exporter writes);
- "OTLP JSON traces": an ExportTraceServiceRequest (`resourceSpans`). Its spans go back to the caller,
  which assembles them with spans from other lines and files (core/otlp.py).

Identity: a file that is one run is keyed by the SHA-256 of its bytes (as before formats existed, so
databases stored then stay idempotent) and its text is stored as written. A run that is an element or a
line is keyed by the SHA-256 of its canonical JSON (core/json_text.py), which is also the text stored:
the same run written again with other spacing or key order is the same run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from llm_monitoring.core import otlp
from llm_monitoring.core.json_text import canonical_json, decode_text, json_type, load_json, sha256_hex, too_deep
from llm_monitoring.core.parsing import is_message, looks_like_message_repr, parse_history, parse_run_document
from llm_monitoring.core.records import LogRecord, ParsedRun, ParseError, RunFailure
from llm_monitoring.core.wording import plural

RUN_LOG = "run log"
MESSAGE_HISTORY = "pydantic-ai message history"
RUN_ARRAY = "JSON array of runs"
JSON_LINES = "JSON Lines"
OTLP_TRACES = "OTLP JSON traces"

ORIGIN_FILE = "file"
ORIGIN_HISTORY = "history"

# Files named so are JSON Lines whatever their first line looks like: a writer appends to them.
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")

ACCEPTED_FORMATS = (
    "accepted formats: a run log (a JSON object with a 'messages' list), a pydantic-ai message history "
    "(a JSON array of messages with kind request/response), a JSON array of runs, JSON Lines (one run per line, "
    "*.jsonl or *.ndjson) and OTLP JSON traces (an object with a 'resourceSpans' list)"
)
_ONE_RUN_PER_PART = "each one must be a run log, a message history or an OTLP request"

_HISTORY_DETECTION = "a JSON array whose elements are messages (kind request/response)"
_REPR_HISTORY_DETECTION = "a JSON array of strings that are Python reprs of pydantic-ai messages (ModelRequest(...))"
_RUN_LOG_DETECTION = "a JSON object with a 'messages' list"
_BOM = b"\xef\xbb\xbf"
_NON_BLANK = re.compile(r"\S")

# What one element or line turned out to be, for the detection phrase: singular and plural.
_KIND_NAMES = {
    "run": ("run log", "run logs"),
    "history": ("message history", "message histories"),
    "otlp": ("OTLP request", "OTLP requests"),
    "failed": ("unreadable", "unreadable"),
}


@dataclass(frozen=True)
class FileRead:
    """What one read of a log file found."""

    format: str  # RUN_LOG, MESSAGE_HISTORY, RUN_ARRAY, JSON_LINES or OTLP_TRACES
    detection: str  # why it was detected so, one phrase ("a JSON object with a 'messages' list")
    runs: tuple[ParsedRun, ...] = ()
    failures: tuple[RunFailure, ...] = ()
    spans: tuple[dict, ...] = ()  # OTLP spans found (otlp.spans_of_request); the caller assembles them
    consumed: int = 0  # bytes of `raw` read: JSON Lines stop after the last complete line; else len(raw)
    appendable: bool = False  # JSON Lines: the writer may append; the caller keeps a byte offset
    lines: int = 0  # JSON Lines: newlines within `consumed`, so the next read's first line is first_line + lines


def read_log(raw: bytes, *, name: str, final: bool, fallback_time: datetime | None = None) -> FileRead:
    """Detect the format of a file's bytes and read its runs; a ParseError when the whole file is unusable.

    final=False: the writer may still be writing (in JSON Lines, a last line without a newline is left
    unconsumed); final=True: the file is settled (such a line is read, and a truncated one is a failure)."""
    try:
        if name.lower().endswith(JSON_LINES_SUFFIXES):
            return _read_named_json_lines(raw, final=final, fallback_time=fallback_time)
        return _read_json_file(raw, final=final, fallback_time=fallback_time)
    except RecursionError as error:
        raise too_deep(error) from None


def read_json_lines(raw: bytes, *, first_line: int, final: bool, fallback_time: datetime | None = None) -> FileRead:
    """Read the runs of JSON Lines text: a whole file, or its tail from a byte offset (`first_line`
    numbers the first line of `raw`). One bad line is a RunFailure and never blocks the others."""
    return _read_lines(raw, first_line=first_line, final=final, fallback_time=fallback_time)


def parse_stored_run(text: str, *, fallback_time: datetime | None = None) -> LogRecord:
    """Parse a stored raw_json again (re-evaluate, re-price): a run log, a message history or an OTLP
    request holding one run."""
    try:
        document, _ = load_json(text)
        if otlp.is_otlp_request(document):
            return _stored_otlp_run(document, fallback_time)
        if isinstance(document, dict):
            return parse_run_document(document, fallback_time=fallback_time)
        if isinstance(document, list) and _array_shape(document) == "history":
            return parse_history(document, fallback_time=fallback_time)
    except RecursionError as error:
        raise too_deep(error) from None
    raise ParseError(f"stored text is {_described(document)}: not one run log, message history or OTLP request")


def _stored_otlp_run(document: dict[str, Any], fallback_time: datetime | None) -> LogRecord:
    assembled = otlp.assemble_runs(otlp.spans_of_request(document), flush=True, fallback_time=fallback_time)
    runs, failures = assembled[0], assembled[1]
    if len(runs) == 1:
        return runs[0].record
    if failures:
        raise ParseError(failures[0].reason)
    raise ParseError(f"stored OTLP request holds {plural(len(runs), 'run')}, not one")


def _read_named_json_lines(raw: bytes, *, final: bool, fallback_time: datetime | None) -> FileRead:
    lines = _read_lines(raw, first_line=1, final=final, fallback_time=fallback_time)
    if lines.runs or lines.spans or not lines.failures or not final:
        return lines
    # Every line failed: a misnamed settled file holding one pretty-printed document reads as that document.
    try:
        return _read_json_file(raw, final=final, fallback_time=fallback_time, several_lines_allowed=False)
    except ParseError:
        return lines


def _read_json_file(raw: bytes, *, final: bool, fallback_time: datetime | None, several_lines_allowed: bool = True) -> FileRead:
    text = decode_text(raw)
    try:
        document, exact = load_json(text)
    except ParseError:
        if several_lines_allowed and _values_one_per_line(text):
            detection = "a .json file holding several JSON values, one per line"
            return _read_lines(raw, first_line=1, final=final, fallback_time=fallback_time, detection=detection)
        raise
    if otlp.is_otlp_request(document) and _one_terminated_line(text):
        # The Collector's file exporter appends one request per line: the file may grow, keep an offset.
        detection = "a .json file holding one OTLP request on one line, as the Collector's file exporter appends them"
        return _read_lines(raw, first_line=1, final=final, fallback_time=fallback_time, detection=detection)
    return _read_document(raw, text, document, exact, fallback_time)


def _read_document(raw: bytes, text: str, document: Any, exact: bool, fallback_time: datetime | None) -> FileRead:
    if otlp.is_otlp_request(document):
        spans = otlp.spans_of_request(document)
        detection = f"a JSON object with a 'resourceSpans' list ({plural(len(spans), 'span')})"
        return FileRead(OTLP_TRACES, detection, spans=tuple(spans), consumed=len(raw))
    if isinstance(document, dict):
        try:
            record = parse_run_document(document, fallback_time=fallback_time)
        except ParseError as error:
            if not isinstance(document.get("messages"), list):  # no run log at all: say what would be
                raise ParseError(f"{error.reason}; {ACCEPTED_FORMATS}") from None
            raise _in_format(RUN_LOG, _RUN_LOG_DETECTION, error) from None
        run = ParsedRun(key=sha256_hex(raw), text=text, record=record, origin=ORIGIN_FILE, where="")
        return FileRead(RUN_LOG, _RUN_LOG_DETECTION, runs=(run,), consumed=len(raw))
    if isinstance(document, list):
        if _array_shape(document) == "history":
            detection = _HISTORY_DETECTION if any(map(is_message, document)) else _REPR_HISTORY_DETECTION
            try:
                record = parse_history(document, fallback_time=fallback_time)
            except ParseError as error:
                raise _in_format(MESSAGE_HISTORY, detection, error) from None
            run = ParsedRun(key=sha256_hex(raw), text=text, record=record, origin=ORIGIN_HISTORY, where="")
            return FileRead(MESSAGE_HISTORY, detection, runs=(run,), consumed=len(raw))
        found = _Found(fallback_time)
        for number, element in enumerate(document, 1):
            found.add(element, f"element {number}", exact=exact)
        detection = f"a JSON array of runs, {plural(len(document), 'element')}: {found.kinds()}"
        return FileRead(RUN_ARRAY, detection, **found.results(), consumed=len(raw))
    raise ParseError(f"JSON is {json_type(document)}, not an object or an array: not a run log; {ACCEPTED_FORMATS}")


def _in_format(format_name: str, detection: str, error: ParseError) -> ParseError:
    """The error of a file whose format was detected: which format, and why it was taken for one."""
    return ParseError(f"{format_name}, {detection}: {error.reason}")


def _array_shape(values: list[Any]) -> str:
    """ "history" for an array of messages, "runs" for an array of runs; else a ParseError saying what it holds.

    Messages written as reprs ("ModelRequest(parts=[...") count as messages, so such a history is refused
    with the fix for its writer rather than as an unknown shape."""
    first_message = first_run = 0
    for number, value in enumerate(values, 1):
        if _is_message_like(value):
            first_message = first_message or number
        elif _is_run_like(value):
            first_run = first_run or number
        if first_message and first_run:
            raise ParseError(
                f"a JSON array mixing messages (element {first_message}) and runs (element {first_run}): "
                f"neither one message history nor one run per element; {ACCEPTED_FORMATS}"
            )
    if first_message:
        return "history"
    if first_run:
        return "runs"
    if not values:
        raise ParseError("an empty JSON array: no runs in it")
    raise ParseError(f"a JSON array whose first element is {_described(values[0])}: not a run log; {ACCEPTED_FORMATS}")


def _is_message_like(value: Any) -> bool:
    return is_message(value) or (isinstance(value, str) and looks_like_message_repr(value.lstrip()))


def _is_run_like(value: Any) -> bool:
    if isinstance(value, dict):
        return "messages" in value or otlp.is_otlp_request(value)
    return isinstance(value, list) and any(_is_message_like(item) for item in value)


def _described(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:12]) or "none"
        return f"an object with keys {keys}"
    if isinstance(value, list):
        return f"an array of {plural(len(value), 'element')}"
    return json_type(value)


def _values_one_per_line(text: str) -> bool:
    """Whether a text that is not one JSON document holds JSON values one per line: its first line is a
    complete JSON value and more follows. A truncated or pretty-printed document fails the first test."""
    start = _NON_BLANK.search(text)
    if start is None:
        return False
    end = text.find("\n", start.start())
    if end < 0 or _NON_BLANK.search(text, end) is None:
        return False
    try:
        load_json(text[start.start() : end], one_line=True)
    except ParseError:
        return False
    return True


def _one_terminated_line(text: str) -> bool:
    end = text.find("\n")
    return end >= 0 and _NON_BLANK.search(text, end) is None


def _read_lines(raw: bytes, *, first_line: int, final: bool, fallback_time: datetime | None, detection: str | None = None) -> FileRead:
    found = _Found(fallback_time)
    view = memoryview(raw)  # lines are parsed in place: a large file is not copied line by line
    position = len(_BOM) if first_line == 1 and raw.startswith(_BOM) else 0
    number, newlines, length = first_line, 0, len(raw)
    while position < length:
        end = raw.find(b"\n", position)
        unterminated = end < 0
        if unterminated:
            if not final:
                break  # the writer may still be writing this line
            end = length
        found.add_line(view[position:end], number, unterminated=unterminated)
        position = length if unterminated else end + 1
        newlines += not unterminated
        number += 1
    phrase = detection or f"{JSON_LINES}: {plural(found.lines, 'line')}"
    kinds = found.kinds()
    return FileRead(
        JSON_LINES,
        f"{phrase} ({kinds})" if kinds else phrase,
        **found.results(),
        consumed=position,
        appendable=True,
        lines=newlines,
    )


@dataclass
class _Found:
    """The runs, failures and spans of the parts (elements, lines) of one read."""

    fallback_time: datetime | None
    runs: list[ParsedRun] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)
    spans: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lines: int = 0

    def results(self) -> dict[str, tuple[Any, ...]]:
        return {"runs": tuple(self.runs), "failures": tuple(self.failures), "spans": tuple(self.spans)}

    def kinds(self) -> str:
        return ", ".join(
            plural(count, *_KIND_NAMES[kind]) for kind in ("run", "history", "otlp", "failed") if (count := self.counts.get(kind))
        )

    def add_line(self, line: memoryview, number: int, *, unterminated: bool) -> None:
        where = f"line {number}"
        try:
            value, exact = orjson.loads(line), True
        except orjson.JSONDecodeError:
            line_bytes = line.tobytes()
            if not line_bytes.strip():
                return  # blank lines separate nothing and are skipped
            self.lines += 1
            try:  # the slow path: NaN and the like still parse, anything else gets a precise reason
                value, exact = load_json(line_bytes.decode("utf-8"), one_line=True)
            except (UnicodeDecodeError, ParseError) as error:
                self._fail(sha256_hex(line_bytes), where, _line_problem(line_bytes, error, unterminated=unterminated))
                return
        else:
            self.lines += 1
        self.add(value, where, exact=exact, line=line)

    def add(self, value: Any, where: str, *, exact: bool, line: memoryview | None = None) -> None:
        """One element or line: a run, an OTLP request's spans, or a failure; never an exception."""
        if otlp.is_otlp_request(value):
            self.spans.extend(otlp.spans_of_request(value))
            self._count("otlp")
            return
        try:
            text = canonical_json(value, exact=exact)
        except RecursionError as error:
            # Nested too deep to write again (the limit is below the reader's): a line keeps its bytes'
            # identity; an element has no bytes of its own, its place names it.
            self._fail(sha256_hex(line.tobytes() if line is not None else f"unwritable {where}"), where, too_deep(error).reason)
            return
        key = sha256_hex(text)
        try:
            if isinstance(value, dict):
                record, origin = parse_run_document(value, fallback_time=self.fallback_time), ORIGIN_FILE
            elif isinstance(value, list) and any(_is_message_like(item) for item in value):
                record, origin = parse_history(value, fallback_time=self.fallback_time), ORIGIN_HISTORY
            else:
                self._fail(key, where, f"{_described(value)}, not a run; {_ONE_RUN_PER_PART}")
                return
        except ParseError as error:
            not_a_run = isinstance(value, dict) and not isinstance(value.get("messages"), list)
            self._fail(key, where, f"{error.reason}; {_ONE_RUN_PER_PART}" if not_a_run else error.reason)
            return
        except RecursionError as error:
            self._fail(key, where, too_deep(error).reason)
            return
        self.runs.append(ParsedRun(key=key, text=text, record=record, origin=origin, where=where))
        self._count("run" if origin == ORIGIN_FILE else "history")

    def _fail(self, key: str, where: str, reason: str) -> None:
        self.failures.append(RunFailure(key=key, where=where, reason=reason))
        self._count("failed")

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


def _line_problem(line: bytes, error: UnicodeDecodeError | ParseError, *, unterminated: bool) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8: byte {error.start} of the line ({line[error.start : error.start + 1]!r})"
    if unterminated and error.reason.startswith("truncated"):
        return f"{error.reason} (the file's last line, with no newline after it)"
    return error.reason
