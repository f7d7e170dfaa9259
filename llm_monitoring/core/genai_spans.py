"""OTLP span dicts -> Span: ids, times, decoded attributes and events, and what kind of span it is.

Three conventions name the same facts differently, and each changed over time:
- OpenTelemetry's GenAI semantic conventions (`gen_ai.*`; older releases said `gen_ai.system` and
  `gen_ai.usage.prompt_tokens`/`completion_tokens`, and carried messages as span events), which
  pydantic-ai's built-in instrumentation follows;
- OpenLLMetry (`gen_ai.usage.cache_read_input_tokens`, flattened `gen_ai.prompt.N.*` and
  `gen_ai.completion.N.*`, `traceloop.span.kind`);
- OpenInference (`llm.token_count.*`, `llm.model_name`, `llm.provider`, flattened
  `llm.input_messages.N.message.*`, `openinference.span.kind`).
This module reads spans and tells agent runs, model requests and tool calls apart;
core/genai_messages.py reads the messages and core/genai_record.py makes the run record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_monitoring.core.limits import shown

OPERATION = "gen_ai.operation.name"
AGENT_OPERATION = "invoke_agent"
TOOL_OPERATION = "execute_tool"
# Operations that are a model request; embeddings cost money too but are not requests of the run.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion", "responses"})
_NOT_LLM_OPERATIONS = frozenset({AGENT_OPERATION, TOOL_OPERATION, "create_agent", "embeddings", "invoke_workflow"})

# Per field of core/limits.USAGE_FIELDS, the attribute names of the conventions, the current one first.
USAGE_KEYS = (
    ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
        "gen_ai.usage.details.cache_read_tokens",
    ),
    (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
        "gen_ai.usage.details.cache_write_tokens",
    ),
)
DIGITS = re.compile(r"-?[0-9]{1,30}")
_MAX_NANOS = 253_402_300_799 * 10**9  # 9999-12-31T23:59:59Z, the last second a stored time can hold
_MAX_VALUE_DEPTH = 8


@dataclass(frozen=True)
class Span:
    """One span as the run reader needs it: ids, name, times as logged, decoded attributes and events."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: Any
    end: Any
    attributes: dict[str, Any]
    events: tuple[tuple[str, dict[str, Any]], ...]
    malformed: int  # attribute entries that are not {key, value}: ignored, and said so in a note

    @property
    def operation(self) -> str:
        value = self.attributes.get(OPERATION)
        return value if isinstance(value, str) else ""

    @property
    def start_nanos(self) -> int:
        """The start as an order key: spans without a readable start come first."""
        nanos, _ = unix_nanos(self.start)
        return nanos or 0


def decode_span(span: dict[str, Any]) -> Span:
    """A staged span dict (otlp.spans_of_request) as a Span. Never raises on what a span holds."""
    attributes, malformed = decode_attributes(span.get("attributes"))
    events = []
    for event in as_list(span.get("events")):
        if isinstance(event, dict) and isinstance(event.get("name"), str):
            event_attributes, bad = decode_attributes(event.get("attributes"))
            malformed += bad
            events.append((event["name"], event_attributes))
    name = span.get("name")
    return Span(
        trace_id=span["traceId"],
        span_id=span["spanId"],
        parent_id=span.get("parentSpanId") or None,
        name=name if isinstance(name, str) else "",
        start=_first_present(span, "startTimeUnixNano", "start_time_unix_nano"),
        end=_first_present(span, "endTimeUnixNano", "end_time_unix_nano"),
        attributes=attributes,
        events=tuple(events),
        malformed=malformed,
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first_present(mapping: dict[str, Any], *keys: str) -> Any:
    return next((mapping[key] for key in keys if key in mapping), None)


def decode_attributes(attributes: Any) -> tuple[dict[str, Any], int]:
    """OTLP attributes ([{key, value: AnyValue}]) as a dict, and how many entries were not readable."""
    if isinstance(attributes, dict):  # hand-written traces sometimes give a plain mapping
        return dict(attributes), 0
    if not isinstance(attributes, list):
        return {}, 0 if attributes is None else 1
    decoded: dict[str, Any] = {}
    malformed = 0
    for entry in attributes:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            decoded[entry["key"]] = any_value(entry.get("value"))
        else:
            malformed += 1
    return decoded, malformed


_VALUE_KINDS = {
    "stringValue": "string",
    "string_value": "string",
    "intValue": "int",
    "int_value": "int",
    "doubleValue": "double",
    "double_value": "double",
    "boolValue": "bool",
    "bool_value": "bool",
    "arrayValue": "array",
    "array_value": "array",
    "kvlistValue": "kvlist",
    "kvlist_value": "kvlist",
    "bytesValue": "bytes",
    "bytes_value": "bytes",
}
_SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP AnyValue as a Python value. int64 arrive as strings in OTLP/JSON; a string that is no
    integer stays a string, so that a count reader can say what was logged."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((field, inner),) = value.items()
    kind = _VALUE_KINDS.get(field)
    if kind == "int":
        if isinstance(inner, str) and DIGITS.fullmatch(inner):
            return int(inner)
        return inner
    if kind == "double":
        return _SPECIAL_FLOATS.get(inner, inner) if isinstance(inner, str) else inner
    if kind in ("string", "bool", "bytes"):
        return inner
    if depth >= _MAX_VALUE_DEPTH or not isinstance(inner, dict) or not isinstance(inner.get("values"), list):
        return None
    if kind == "array":
        return [any_value(item, depth + 1) for item in inner["values"]]
    if kind == "kvlist":
        return {
            entry["key"]: any_value(entry.get("value"), depth + 1)
            for entry in inner["values"]
            if isinstance(entry, dict) and isinstance(entry.get("key"), str)
        }
    return None


# Span classification ------------------------------------------------------------------------------


def is_agent_span(span: Span) -> bool:
    """An agent run: the GenAI `invoke_agent` operation, pydantic-ai's run span names, or the agent
    span kinds of OpenInference and OpenLLMetry."""
    if span.operation == AGENT_OPERATION or span.name == "agent run" or span.name.startswith(AGENT_OPERATION):
        return True
    return span_kind(span, "openinference.span.kind") == "agent" or span_kind(span, "traceloop.span.kind") == "agent"


def is_tool_span(span: Span) -> bool:
    if span.operation == TOOL_OPERATION or span.name.startswith(TOOL_OPERATION) or span.name == "running tool":
        return True
    return span_kind(span, "openinference.span.kind") == "tool" or span_kind(span, "traceloop.span.kind") == "tool"


def is_llm_span(span: Span) -> bool:
    """A model request: a chat-like operation, an OpenInference LLM span, OpenLLMetry's request type,
    or (conventions before `gen_ai.operation.name`) a span that is neither agent nor tool and reports usage."""
    if span.operation in LLM_OPERATIONS or span_kind(span, "openinference.span.kind") == "llm":
        return True
    if span.operation in _NOT_LLM_OPERATIONS or is_agent_span(span) or is_tool_span(span):
        return False
    if span_kind(span, "openinference.span.kind") or span_kind(span, "traceloop.span.kind"):
        return False  # a chain, workflow or task span: it may sum its children's usage
    if span_kind(span, "llm.request.type") in ("chat", "completion"):
        return True
    return any(key in span.attributes for keys in USAGE_KEYS[:2] for key in keys)


def span_kind(span: Span, key: str) -> str:
    value = span.attributes.get(key)
    return value.lower() if isinstance(value, str) else ""


# Times --------------------------------------------------------------------------------------------


def unix_nanos(value: Any) -> tuple[int | None, str | None]:
    """Unix nanoseconds as logged (a string in OTLP/JSON) -> (nanos, None); (None, None) when absent
    or 0 (unset, per OTLP); (None, why) when it cannot be a time."""
    if value is None:
        return None, None
    if isinstance(value, str) and DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None, f"{shown(value)} is not a number of nanoseconds"
    if value == 0:
        return None, None
    if value < 0:
        return None, f"{shown(value)} is before 1970"
    if value > _MAX_NANOS:
        return None, f"{shown(value)} is after the year 9999"
    return value, None


def time_of(nanos: int) -> datetime:
    seconds, rest = divmod(nanos, 10**9)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)
