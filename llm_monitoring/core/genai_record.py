"""The spans of one agent run -> LogRecord.

Every value goes through core/limits.py like the run-object parser's: a value that cannot be a
count or a time is dropped with a note, never a crash. Input counts include cached tokens, as the
GenAI conventions say. Usage is summed over the run's model requests, or taken from the agent
span's run totals when no request reports any: never both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from llm_monitoring.core.genai_messages import Message, as_json, first_text, read_messages, span_messages, text_value, tool_call
from llm_monitoring.core.genai_spans import (
    DIGITS,
    TOOL_OPERATION,
    USAGE_KEYS,
    Span,
    is_agent_span,
    is_llm_span,
    is_tool_span,
    span_kind,
    time_of,
    unix_nanos,
)
from llm_monitoring.core.limits import MAX_COUNT, MAX_NOTES, USAGE_FIELDS, count_value, shown
from llm_monitoring.core.parsing import OUTPUT_TOOL_PREFIX, render_structured_output
from llm_monitoring.core.records import LogRecord, ToolCall

# pydantic-ai writes a run's totals on its agent span as gen_ai.aggregated_usage.* (gen_ai.usage.* before
# 1.x), so that backends summing spans do not count them twice; read only when no request reports usage.
_RUN_USAGE_KEYS = tuple(
    tuple(key.replace("gen_ai.usage.", "gen_ai.aggregated_usage.") for key in keys if key.startswith("gen_ai.usage.")) + keys
    for keys in USAGE_KEYS
)
_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model_name", "llm.model_name", "gen_ai.request.model", "llm.request.model_name")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_AGENT_NAME_KEYS = ("gen_ai.agent.name", "agent_name", "agent.name")
_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name")
_TOOL_ARGUMENT_KEYS = ("gen_ai.tool.call.arguments", "tool_arguments", "input.value", "traceloop.entity.input")
_TOOL_ID_KEYS = ("gen_ai.tool.call.id", "tool.id", "tool_call.id")

# Provider names of the semantic conventions (and vendors) -> the names pydantic-ai logs and
# genai-prices resolves; anything else is kept lower-cased.
_PROVIDER_NAMES = {
    "gcp.gemini": "google-gla",
    "gcp.gen_ai": "google-gla",
    "gemini": "google-gla",
    "gcp.vertex_ai": "google-vertex",
    "vertex_ai": "google-vertex",
    "vertexai": "google-vertex",
    "aws.bedrock": "bedrock",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "xai",
}


def build_record(anchor: Span, members: Sequence[Span], *, fallback_time: datetime | None = None) -> LogRecord:
    """The run whose agent span (or, without one, root span) is `anchor`; `members` holds every
    span of the run, `anchor` included, and none of a nested agent run's."""
    notes: list[str] = []
    ordered = sorted(members, key=lambda span: (span.start_nanos, span.span_id))
    requests = request_spans(ordered)
    input_tokens, output_tokens, cache_read, cache_write = _usage(anchor, requests, notes)
    conversation = _conversation(anchor, requests)
    answer, references = _answer(anchor, conversation)
    started, finished = _run_window(anchor, ordered, fallback_time, notes)
    malformed = sum(span.malformed for span in ordered)
    if malformed:
        notes.append(f"attributes: {malformed} attribute entries are not {{key, value}} objects; ignored")
    return LogRecord(
        agent_name=_agent_name(anchor, ordered),
        provider=_provider(anchor, requests),
        model=_model(anchor, requests),
        user_prompt=_user_prompt(anchor, conversation),
        instructions=_instructions(anchor, requests, conversation),
        assistant_answer=answer,
        answer_references=references,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        requests=len(requests) if requests else None,
        tool_calls=tuple(_tool_calls(ordered, conversation)),
        finish_reasons=tuple(_finish_reasons(requests)),
        run_started_at=started,
        run_finished_at=finished,
        value_notes=tuple(dict.fromkeys(notes))[:MAX_NOTES],
    )


def request_spans(ordered: Sequence[Span]) -> list[list[Span]]:
    """The run's model requests in time order, each as its LLM spans, the outermost first.
    Two instrumentations of one call (pydantic-ai's `chat` span around OpenLLMetry's `openai.chat`)
    are one request, not two."""
    llm_ids = {span.span_id for span in ordered if is_llm_span(span)}
    by_id = {span.span_id: span for span in ordered}
    outermost: dict[str, str | None] = {}  # span id -> its outermost LLM ancestor-or-self, memoized
    groups: dict[str, list[Span]] = {}
    for span in ordered:
        if span.span_id not in llm_ids:
            continue
        path: list[str] = []
        node: str | None = span.span_id
        while node in by_id and node not in outermost and node not in path:
            path.append(node)
            node = by_id[node].parent_id
        found = outermost.get(node) if node is not None else None
        for step in reversed(path):  # top down: the first LLM span met is the outermost
            found = found or (step if step in llm_ids else None)
            outermost[step] = found
        groups.setdefault(outermost[span.span_id] or span.span_id, []).append(span)
    return list(groups.values())


_Count = tuple[int | None, str | None]


def _counts(attributes: dict[str, Any], key_lists: tuple[tuple[str, ...], ...]) -> list[_Count]:
    return [_first_count(attributes, keys) for keys in key_lists]


def _first_count(attributes: dict[str, Any], keys: tuple[str, ...]) -> _Count:
    for key in keys:
        if key not in attributes:
            continue
        value = attributes[key]
        if isinstance(value, str):
            if not DIGITS.fullmatch(value.strip()):
                return None, f"{shown(value)} is not a number (logged as {key})"
            value = int(value)
        number, problem = count_value(value)
        if problem:
            return None, f"{problem} (logged as {key})"
        if number is not None:
            return number, None
    return None, None


def _reports_usage(counts: list[_Count]) -> bool:
    return any(number is not None or problem for number, problem in counts[:2])


def _usage(anchor: Span, requests: list[list[Span]], notes: list[str]) -> tuple[int | None, ...]:
    """Summed over the requests when they report usage, else the agent span's run totals: never both."""
    reported: list[list[_Count]] = []
    for request in requests:
        counts = next((found for span in request if _reports_usage(found := _counts(span.attributes, USAGE_KEYS))), None)
        if counts is not None:
            reported.append(counts)
    if not reported:
        totals = _counts(anchor.attributes, _RUN_USAGE_KEYS)
        if not _reports_usage(totals):
            return None, None, None, None
        reported = [totals]
    kept: list[int | None] = []
    for index, field in enumerate(USAGE_FIELDS):
        problem = next((problem for counts in reported if (problem := counts[index][1])), None)
        numbers = [counts[index][0] for counts in reported]
        total = sum(number or 0 for number in numbers)
        if problem is None and total > MAX_COUNT:
            problem = f"the requests add up to {total:,}, over {MAX_COUNT:,}, the largest count stored"
        if problem:
            notes.append(f"{field}: {problem}")
            kept.append(None)
        elif index < 2 and all(number is None for number in numbers):
            kept.append(None)
        else:
            kept.append(total)
    return tuple(kept)


def _model(anchor: Span, requests: list[list[Span]]) -> str | None:
    # The last request names the model that answered, as the run-object parser takes the last response.
    for request in reversed(requests):
        for span in request:
            model = first_text(span.attributes, _MODEL_KEYS)
            if model:
                return model
    return first_text(anchor.attributes, (*_MODEL_KEYS, "model_name"))


def normalize_provider(name: str) -> str:
    lowered = name.strip().lower()
    return _PROVIDER_NAMES.get(lowered, lowered)


def _provider(anchor: Span, requests: list[list[Span]]) -> str | None:
    for span in (*(span for request in requests for span in request), anchor):
        provider = first_text(span.attributes, _PROVIDER_KEYS)
        if provider:
            return normalize_provider(provider)
    return None


def _agent_name(anchor: Span, ordered: Sequence[Span]) -> str | None:
    name = first_text(anchor.attributes, _AGENT_NAME_KEYS)
    if name:
        return name
    if span_kind(anchor, "traceloop.span.kind") in ("agent", "workflow"):
        name = first_text(anchor.attributes, ("traceloop.entity.name", "traceloop.workflow.name"))
        if name:
            return name
    # pydantic-ai puts the agent name on every span of the run (baggage); a root-anchored run has only those.
    return next((name for span in ordered if (name := first_text(span.attributes, _AGENT_NAME_KEYS))), None)


def _finish_reasons(requests: list[list[Span]]) -> Iterator[str]:
    for request in requests:
        for span in request:
            reasons = span.attributes.get("gen_ai.response.finish_reasons")
            if isinstance(reasons, str):
                reasons = [reasons]
            found = [reason for reason in reasons if text_value(reason)] if isinstance(reasons, list) else []
            found = (
                found
                or [
                    reason
                    for key in ("llm.finish_reason", "gen_ai.completion.0.finish_reason", "llm.response.finish_reason")
                    if (reason := text_value(span.attributes.get(key)))
                ][:1]
            )
            if found:
                yield from found
                break


def _conversation(anchor: Span, requests: list[list[Span]]) -> list[Message]:
    """The run's messages in order: the agent span's own record of them when it has one (pydantic-ai's
    `pydantic_ai.all_messages`, the conventions' messages on `invoke_agent`, pydantic-ai 0.x's
    `all_messages_events`), else the last request's input and output, which hold the whole history."""
    attributes = anchor.attributes
    recorded = read_messages(attributes.get("pydantic_ai.all_messages"))
    recorded = recorded or read_messages(attributes.get("gen_ai.input.messages")) + read_messages(attributes.get("gen_ai.output.messages"))
    recorded = recorded or read_messages(attributes.get("all_messages_events"))
    if recorded or not requests:
        return recorded
    per_request = [_request_messages(request) for request in requests]
    last_inputs, last_outputs = per_request[-1]
    if last_inputs:
        return last_inputs + last_outputs
    first_inputs = next((inputs for inputs, _ in per_request if inputs), [])
    return first_inputs + [message for _, outputs in per_request for message in outputs]


def _request_messages(spans: list[Span]) -> tuple[list[Message], list[Message]]:
    inputs: list[Message] = []
    outputs: list[Message] = []
    for span in spans:
        span_inputs, span_outputs = span_messages(span)
        inputs = inputs or span_inputs
        outputs = outputs or span_outputs
    return inputs, outputs


def _user_prompt(anchor: Span, conversation: list[Message]) -> str | None:
    for found in conversation:
        if found.role == "user" and found.texts:
            return found.texts[0]
    return first_text(anchor.attributes, ("input.value", "traceloop.entity.input"))


def _instructions(anchor: Span, requests: list[list[Span]], conversation: list[Message]) -> str | None:
    for span in (anchor, *(span for request in requests for span in request)):
        value = span.attributes.get("gen_ai.system_instructions")
        parsed = as_json(value)
        if isinstance(parsed, list):
            texts = [part.get("content") for part in parsed if isinstance(part, dict) and part.get("type", "text") == "text"]
            joined = "\n\n".join(text for text in texts if text_value(text))
            if joined:
                return joined
        elif text_value(value):
            return value if not isinstance(parsed, str) else parsed
    joined = "\n\n".join(text for found in conversation if found.role == "system" for text in found.texts)
    return joined or None


def _answer(anchor: Span, conversation: list[Message]) -> tuple[str | None, tuple[str, ...]]:
    """The run's output as its agent span declares it (pydantic-ai's `final_result`, OpenInference's
    `output.value`), else the model's last text, else OpenLLMetry's recorded return value."""
    for key in ("final_result", "output.value"):
        declared = _declared_output(anchor.attributes.get(key))
        if declared[0]:
            return declared
    for found in reversed(conversation):
        if found.role == "assistant" and found.texts:
            return found.texts[-1], ()
    return _declared_output(anchor.attributes.get("traceloop.entity.output"))


def _declared_output(value: Any) -> tuple[str | None, tuple[str, ...]]:
    """A text output as it is, a structured one (JSON text of an object) rendered like the run-object
    parser renders `output`, a JSON string literal decoded."""
    if not text_value(value):
        return None, ()
    if value.lstrip()[:1] in ("{", '"'):
        decoded = as_json(value)
        if isinstance(decoded, dict) and decoded:
            try:
                return render_structured_output(decoded)
            except RecursionError:  # an object nested deeper than it can be shown: keep its text
                return value, ()
        if isinstance(decoded, str):
            return (decoded if decoded.strip() else None), ()
    return value, ()


def _tool_calls(ordered: Sequence[Span], conversation: list[Message]) -> Iterator[ToolCall]:
    """Tool calls from the `execute_tool` spans; when the run has none, from the model's requests for them."""
    tool_spans = [span for span in ordered if is_tool_span(span) and not is_agent_span(span)]
    if tool_spans:
        for span in tool_spans:
            name = first_text(span.attributes, _TOOL_NAME_KEYS)
            if not name and span_kind(span, "traceloop.span.kind") == "tool":
                name = first_text(span.attributes, ("traceloop.entity.name",))
            name = name or span.name.removeprefix(TOOL_OPERATION).strip() or None
            if name and not name.startswith(OUTPUT_TOOL_PREFIX):
                arguments = next((span.attributes[key] for key in _TOOL_ARGUMENT_KEYS if key in span.attributes), None)
                yield from tool_call(name, arguments, first_text(span.attributes, _TOOL_ID_KEYS))
        return
    for found in conversation:
        for call in found.tool_calls:
            if not call.tool_name.startswith(OUTPUT_TOOL_PREFIX):
                yield call


def _run_window(
    anchor: Span, ordered: Sequence[Span], fallback_time: datetime | None, notes: list[str]
) -> tuple[datetime | None, datetime | None]:
    start, start_problem = unix_nanos(anchor.start)
    end, end_problem = unix_nanos(anchor.end)
    if start_problem:
        notes.append(f"run_started_at: {start_problem}; ignored")
    if end_problem:
        notes.append(f"run_finished_at: {end_problem}; ignored")
    if start is None or end is None:
        # The anchor lacks a time: the run lasted at least from its first span's start to its last span's end.
        starts = [nanos for span in ordered if (nanos := unix_nanos(span.start)[0])]
        ends = [nanos for span in ordered if (nanos := unix_nanos(span.end)[0])]
        start = start if start is not None else min(starts, default=None)
        end = end if end is not None else max(ends, default=None)
    if start is None and end is None:
        return fallback_time, fallback_time
    start = start if start is not None else end
    if start is not None and end is not None and end < start:
        notes.append(f"run_finished_at: the span ends ({end}) before it starts ({start}); ignored")
        end = None
    return (time_of(start) if start is not None else None), (time_of(end) if end is not None else None)
