"""OTLP JSON traces -> spans -> runs.

Traces arrive as OTLP/JSON `ExportTraceServiceRequest` objects (lowerCamelCase fields, hex trace
and span ids), one per file or one per line, as the OpenTelemetry Collector's file exporter writes
them; one trace's spans may be spread over several requests, lines and files. So reading is in two
steps: `spans_of_request` turns a request into self-contained span dicts that can be kept (staged)
until their trace is complete, and `assemble_runs` groups spans by trace and makes one run per
agent-run span once the trace's root span is there (or the caller says the writer is done).

A run's identity is its trace id and agent-run span id, whatever file its spans came from; its
stored text is a request holding exactly its spans, in a canonical order, so that reading that text
again gives the same run. Reading the GenAI attributes of a run is core/genai_spans.py's job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from llm_monitoring.core.genai_record import build_record
from llm_monitoring.core.genai_spans import Span, decode_span, is_agent_span, is_llm_span
from llm_monitoring.core.limits import shown
from llm_monitoring.core.records import ParsedRun, RunFailure

ORIGIN = "otlp"
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# Keys a staged span dict adds to the span object as written: the resource and instrumentation
# scope of its request (so it can be stored alone), and for an unreadable span, why and where.
RESOURCE = "resource"
SCOPE = "scope"
PROBLEM = "problem"
PROBLEM_KEY = "problemKey"
WHERE = "where"

_ID_FIELDS = {
    "traceId": ("traceId", "trace_id"),
    "spanId": ("spanId", "span_id"),
    "parentSpanId": ("parentSpanId", "parent_span_id"),
}
_HEX = re.compile(r"[0-9a-fA-F]+")
_NANOS = re.compile(r"[0-9]{1,30}")


def is_otlp_request(document: object) -> bool:
    """An ExportTraceServiceRequest: a JSON object with a `resourceSpans` list."""
    return isinstance(document, dict) and isinstance(_field(document, "resourceSpans", "resource_spans"), list)


def _field(mapping: dict[str, Any], *names: str) -> Any:
    # Protobuf's JSON parsers accept the proto field names too (resource_spans), so writers use both.
    return next((mapping[name] for name in names if name in mapping), None)


def _objects(mapping: dict[str, Any], *names: str) -> list[Any]:
    value = _field(mapping, *names)
    return value if isinstance(value, list) else []


def spans_of_request(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans of one request as self-contained, JSON-serialisable dicts: the span object as written,
    its ids as lower-case hex (`traceId`, `spanId`, `parentSpanId` absent for a root), plus `resource`
    and `scope`, the objects of the request it came in.

    A span that cannot be placed in a trace (not an object, an id of the wrong length, a value JSON
    cannot carry) is kept as `{traceId, spanId, problem, problemKey, where}`: `assemble_runs` reports it
    as a failure, so nothing is dropped without a word.
    """
    spans: list[dict[str, Any]] = []
    for r, resource_spans in enumerate(_objects(document, "resourceSpans", "resource_spans")):
        if not isinstance(resource_spans, dict):
            spans.append(_unreadable(resource_spans, f"resourceSpans[{r}]", "is not an object"))
            continue
        resource = _portable(_field(resource_spans, "resource"))
        # `instrumentationLibrarySpans` is the name OTLP used before 0.15; old exports still hold it.
        for s, scope_spans in enumerate(_objects(resource_spans, "scopeSpans", "scope_spans", "instrumentationLibrarySpans")):
            where = f"resourceSpans[{r}].scopeSpans[{s}]"
            if not isinstance(scope_spans, dict):
                spans.append(_unreadable(scope_spans, where, "is not an object"))
                continue
            scope = _portable(_field(scope_spans, "scope", "instrumentationLibrary"))
            for i, span in enumerate(_objects(scope_spans, "spans")):
                spans.append(_staged(span, resource, scope, f"{where}.spans[{i}]"))
    return spans


def _portable(value: Any) -> dict[str, Any]:
    """A resource or scope object as staged. One that JSON cannot carry is left out: it names the
    process that wrote the spans and no field of a run comes from it."""
    if not isinstance(value, dict):
        return {}
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return {}
    return value


def _staged(span: Any, resource: dict[str, Any], scope: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(span, dict):
        return _unreadable(span, where, "is not an object")
    ids: dict[str, str] = {}
    for field, names in _ID_FIELDS.items():
        value = _field(span, *names)
        if field == "parentSpanId" and value in (None, ""):
            continue
        size = TRACE_ID_BYTES if field == "traceId" else SPAN_ID_BYTES
        hex_id = id_hex(value, size)
        if hex_id is None:
            return _unreadable(span, where, f"its {field} {shown(value)} is not an id of {size} bytes in hex", ids)
        ids[field] = hex_id
    staged = {key: value for key, value in span.items() if key not in _ALL_ID_NAMES}
    staged.update(ids)
    staged[RESOURCE] = resource
    staged[SCOPE] = scope
    try:
        encoded = orjson.dumps(staged)
    except orjson.JSONEncodeError as error:
        return _unreadable(span, where, f"holds a value JSON cannot carry ({error})", ids)
    # The span as JSON gives it back (NaN, which the json module reads, becomes null): what is read
    # now is what a staged or stored copy of it will read as later.
    return orjson.loads(encoded)


_ALL_ID_NAMES = frozenset(name for names in _ID_FIELDS.values() for name in names)


def id_hex(value: Any, size: int) -> str | None:
    """A trace or span id as lower-case hex, or None when it is not one. OTLP/JSON writes ids in hex;
    protobuf's own JSON printer writes them in base64, which some hand-made exporters keep: accepted
    too (the two forms of one id never have the same length)."""
    if not isinstance(value, str):
        return None
    if len(value) == 2 * size and _HEX.fullmatch(value):
        hex_id = value.lower()
    elif len(value) == 4 * ((size + 2) // 3):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != size:
            return None
        hex_id = raw.hex()
    else:
        return None
    return None if hex_id == "0" * len(hex_id) else hex_id  # all zeros: "no id", per the OTLP spec


def _unreadable(value: Any, where: str, reason: str, ids: dict[str, str] | None = None) -> dict[str, Any]:
    ids = ids or {}
    return {
        "traceId": ids.get("traceId", ""),
        "spanId": ids.get("spanId", ""),
        PROBLEM: f"span {where} {reason}: it is not part of any run",
        PROBLEM_KEY: hashlib.sha256(_canonical_or_repr(value)).hexdigest(),
        WHERE: where,
    }


def _canonical_or_repr(value: Any) -> bytes:
    """Canonical JSON of a value as read from a file; past orjson's 255 levels of nesting (a file may
    hold up to 1,024), the json module's, with the same sorted keys; past that, a value too deep to
    write is known by its type and size only."""
    try:
        return canonical_json(value)
    except orjson.JSONEncodeError:
        pass  # too deep or too large an integer for orjson: try the json module, which allows both
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError, TypeError):
        return f"{type(value).__name__} of {len(value) if isinstance(value, (dict, list)) else 0} items nested too deeply".encode()


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def run_key(trace_id: str, span_id: str) -> str:
    """The identity of the run of this agent-run span, whichever lines or files its spans came in."""
    return hashlib.sha256(f"otlp\0{trace_id}\0{span_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Assembly:
    """What `assemble_runs` made of a set of spans."""

    runs: list[ParsedRun]
    failures: list[RunFailure]
    waiting: list[dict[str, Any]]  # spans of traces not complete yet, unchanged: keep them for the next pass
    ignored: list[str]  # trace ids (hex) of complete traces with no GenAI span: not agent traces, no run


def assemble_runs(
    spans: Sequence[dict[str, Any]], *, flush: bool, fallback_time: datetime | None = None
) -> tuple[list[ParsedRun], list[RunFailure], list[dict[str, Any]], list[str]]:
    """Group spans by trace; make the runs of every complete trace.

    A trace is complete when its root span (no parentSpanId) is among the spans: a span ends after
    its children, so exporters send the root last. With `flush=True` every trace is taken as
    complete (the writer is done). Returns (runs, failures, waiting spans, ignored trace ids): runs
    of complete traces, one per agent-run span (or, in a trace with model requests but no agent
    span, one per root); failures (unreadable spans, a run that holds nothing); the unchanged spans
    of traces still waiting; and the ids of complete traces with no GenAI span, which are not agent
    traces and give nothing.
    """
    assembly = assemble(spans, flush=flush, fallback_time=fallback_time)
    return assembly.runs, assembly.failures, assembly.waiting, assembly.ignored


def assemble(spans: Sequence[dict[str, Any]], *, flush: bool, fallback_time: datetime | None = None) -> Assembly:
    runs: list[ParsedRun] = []
    failures: dict[str, RunFailure] = {}
    waiting: list[dict[str, Any]] = []
    ignored: list[str] = []
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        problem = _problem(span)
        if problem is not None:
            failures.setdefault(problem.key, problem)
        else:
            traces.setdefault(span["traceId"], []).append(span)
    for trace_id in sorted(traces):
        members = traces[trace_id]
        if not flush and all(span.get("parentSpanId") for span in members):
            waiting += members
            continue
        trace_runs, trace_failures = _trace_runs(trace_id, members, fallback_time)
        if not trace_runs and not trace_failures:
            ignored.append(trace_id)
        runs += trace_runs
        for failure in trace_failures:
            failures.setdefault(failure.key, failure)
    return Assembly(runs, list(failures.values()), waiting, ignored)


def _problem(span: Any) -> RunFailure | None:
    """Why a staged span cannot be assembled (spans_of_request said so, or the dict is not one it made)."""
    if not isinstance(span, dict):
        return RunFailure(hashlib.sha256(_canonical_or_repr(span)).hexdigest(), "span", f"staged span {shown(span)} is not an object")
    if PROBLEM in span:
        key = span.get(PROBLEM_KEY)
        key = key if isinstance(key, str) else hashlib.sha256(_canonical_or_repr(span)).hexdigest()
        return RunFailure(key, str(span.get(WHERE, "span")), str(span[PROBLEM]))
    parent = span.get("parentSpanId")
    if (
        id_hex(span.get("traceId"), TRACE_ID_BYTES) != span.get("traceId")
        or id_hex(span.get("spanId"), SPAN_ID_BYTES) != span.get("spanId")
        or (parent is not None and id_hex(parent, SPAN_ID_BYTES) != parent)
    ):
        key = hashlib.sha256(_canonical_or_repr(span)).hexdigest()
        return RunFailure(key, "span", "staged span has no lower-case hex traceId and spanId: read it with otlp.spans_of_request")
    return None


def _trace_runs(trace_id: str, members: list[dict[str, Any]], fallback_time: datetime | None) -> tuple[list[ParsedRun], list[RunFailure]]:
    staged = _unique_spans(members)
    spans = {span_id: decode_span(span) for span_id, span in staged.items()}
    children: dict[str, list[str]] = {}
    for span in spans.values():
        if span.parent_id is not None and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span.span_id)
    agents = {span_id for span_id, span in spans.items() if is_agent_span(span)}
    runs: list[ParsedRun] = []
    failures: list[RunFailure] = []
    for anchor, member_ids in _anchored_runs(trace_id, spans, children, agents):
        run_spans = [spans[span_id] for span_id in member_ids]
        has_requests = any(is_llm_span(span) for span in run_spans)
        if anchor.span_id not in agents and not has_requests:
            continue  # no agent and no model request under this root: not an agent run
        if anchor.span_id in agents and not has_requests and _wraps_agents(anchor.span_id, children, agents):
            continue  # an agent span around another instrumentation's agent span: the inner one is the run
        outcome = _run(trace_id, anchor, run_spans, [staged[span_id] for span_id in member_ids], fallback_time)
        (runs if isinstance(outcome, ParsedRun) else failures).append(outcome)
    return runs, failures


def _anchored_runs(trace_id: str, spans: dict[str, Span], children: dict[str, list[str]], agents: set[str]) -> list[tuple[Span, list[str]]]:
    """Each run of a trace as (anchor span, ids of its spans), in start order.

    With agent spans, each is a run of its own spans. Without, the root is the run; in a trace read
    without its root (flush), the spans whose parent is missing are grouped by that parent, which
    stands in as the anchor: its id is the one the complete trace would have given the run.
    """
    if agents:
        anchored = [(spans[span_id], list(_run_members(span_id, children, agents))) for span_id in agents]
    else:
        tops: dict[str, list[str]] = {}
        for span_id, span in spans.items():
            parent = span.parent_id
            if parent is None or parent == span_id:
                tops.setdefault(span_id, []).append(span_id)
            elif parent not in spans:
                tops.setdefault(parent, []).append(span_id)
        anchored = []
        for anchor_id, top_ids in tops.items():
            anchor = spans.get(anchor_id) or Span(trace_id, anchor_id, None, "", None, None, {}, (), 0)
            anchored.append((anchor, [member for top in top_ids for member in _run_members(top, children, agents)]))
    return sorted(anchored, key=lambda run: (min(spans[member].start_nanos for member in run[1]), run[0].span_id))


def _unique_spans(members: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The trace's spans by id. A span read twice (a file re-read, a request re-sent) is one span; when
    the copies differ, the same one is kept whatever order they came in."""
    unique: dict[str, dict[str, Any]] = {}
    for span in members:
        kept = unique.get(span["spanId"])
        if kept is None or (kept is not span and _canonical_or_repr(span) < _canonical_or_repr(kept)):
            unique[span["spanId"]] = span
    return unique


def _run_members(anchor_id: str, children: dict[str, list[str]], agents: set[str]) -> Iterator[str]:
    """The anchor and its descendants, except the spans of nested agent runs (runs of their own)."""
    seen = {anchor_id}
    stack = [anchor_id]
    while stack:
        span_id = stack.pop()
        yield span_id
        for child in children.get(span_id, ()):
            if child not in seen and child not in agents:
                seen.add(child)
                stack.append(child)


def _wraps_agents(anchor_id: str, children: dict[str, list[str]], agents: set[str]) -> bool:
    seen = {anchor_id}
    stack = [anchor_id]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child in agents:
                return True
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return False


def _run(
    trace_id: str, anchor: Span, run_spans: list[Span], staged: list[dict[str, Any]], fallback_time: datetime | None
) -> ParsedRun | RunFailure:
    key = run_key(trace_id, anchor.span_id)
    where = f"trace {trace_id} span {anchor.span_id}"
    try:
        record = build_record(anchor, run_spans, fallback_time=fallback_time)
    except RecursionError:
        return RunFailure(key, where, "a value in the run's spans is nested too deeply to read")
    if record.requests is None and record.input_tokens is None and not (record.user_prompt or record.assistant_answer or record.tool_calls):
        return RunFailure(
            key,
            where,
            f"agent-run span {anchor.name!r} has no model request, usage or message in the trace: nothing to store "
            "(were its chat spans exported?)",
        )
    try:
        text = request_text(staged)
    except orjson.JSONEncodeError as error:
        return RunFailure(key, where, f"the run's spans cannot be written back as JSON ({error})")
    return ParsedRun(key=key, text=text, record=record, origin=ORIGIN, where=where)


def request_text(staged: Sequence[dict[str, Any]]) -> str:
    """An ExportTraceServiceRequest (canonical JSON) holding exactly these staged spans, grouped by
    resource and scope, in start order: the same text whatever order or requests the spans came in."""
    resources: dict[bytes, tuple[dict[str, Any], dict[bytes, tuple[dict[str, Any], list[dict[str, Any]]]]]] = {}
    for span in sorted(staged, key=_span_order):
        resource, scope = span.get(RESOURCE) or {}, span.get(SCOPE) or {}
        body = {key: value for key, value in span.items() if key not in (RESOURCE, SCOPE)}
        scopes = resources.setdefault(canonical_json(resource), (resource, {}))[1]
        scopes.setdefault(canonical_json(scope), (scope, []))[1].append(body)
    document = {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": scope, "spans": bodies} for scope, bodies in scopes.values()]}
            for resource, scopes in resources.values()
        ]
    }
    return canonical_json(document).decode()


def _span_order(span: dict[str, Any]) -> tuple[int, str]:
    start = span.get("startTimeUnixNano")
    if isinstance(start, str) and _NANOS.fullmatch(start):
        start = int(start)
    return (start if isinstance(start, int) and not isinstance(start, bool) else -1), span["spanId"]
