"""Chat messages of a span, whichever convention recorded them, reduced to role, texts and tool calls.

The current GenAI conventions record JSON `{role, parts}` in `gen_ai.input.messages` and
`gen_ai.output.messages`; pydantic-ai 0.x kept event dicts in an `events` attribute; older
instrumentations emitted span events (`gen_ai.user.message`, `gen_ai.choice`, or
`gen_ai.content.prompt`); OpenLLMetry and OpenInference flatten messages into indexed attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from llm_monitoring.core.genai_spans import Span, as_list
from llm_monitoring.core.records import ToolCall

_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "assistant",
}
# Roles as other chat APIs name them (Gemini's "model", LangChain's "ai"/"human").
_ROLE_NAMES = {"model": "assistant", "ai": "assistant", "human": "user"}


@dataclass(frozen=True)
class Message:
    """A chat message of any convention, reduced to what a run record needs."""

    role: str
    texts: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]


def text_value(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def first_text(attributes: dict[str, Any], keys: Iterable[str]) -> str | None:
    return next((text for key in keys if (text := text_value(attributes.get(key)))), None)


def as_json(value: Any) -> Any:
    """A structured attribute: the conventions allow JSON text or an OTLP array/kvlist value."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def message(value: Any) -> Message | None:
    """One message: semantic-convention `{role, parts}`, OpenAI-style `{role, content, tool_calls}`,
    or a pydantic-ai 0.x event dict (`{"event.name": "gen_ai.user.message", "content": ...}`)."""
    if not isinstance(value, dict):
        return None
    event = value.get("event.name")
    if event == "gen_ai.choice" and isinstance(value.get("message"), dict):
        value, event = {"role": "assistant", **value["message"]}, None
    role = value.get("role") if isinstance(value.get("role"), str) else _EVENT_ROLES.get(event, "")
    role = _ROLE_NAMES.get(role.lower(), role.lower())
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in as_list(value.get("parts")):
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and text_value(part.get("content")):
            texts.append(part["content"])
        elif part.get("type") == "tool_call":
            calls += tool_call(part.get("name"), part.get("arguments"), part.get("id"))
    texts += _content_texts(value.get("content"))
    for call in as_list(value.get("tool_calls")):
        if isinstance(call, dict):
            function = call.get("function") if isinstance(call.get("function"), dict) else call
            calls += tool_call(function.get("name"), function.get("arguments"), call.get("id"))
    return Message(role, tuple(texts), tuple(calls))


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content.strip() else []
    if not isinstance(content, list):
        return []
    texts = []
    for item in content:
        text = item if isinstance(item, str) else first_text(item, ("text", "content")) if isinstance(item, dict) else None
        if text and text.strip():
            texts.append(text)
    return texts


def tool_call(name: Any, arguments: Any, call_id: Any) -> list[ToolCall]:
    if not text_value(name):
        return []
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        try:
            arguments = json.dumps(arguments, ensure_ascii=False, default=str)
        except RecursionError:
            arguments = "(arguments nested too deeply to show)"
    return [ToolCall(tool_name=name, args=arguments, tool_call_id=call_id if isinstance(call_id, str) else None)]


def read_messages(values: Any) -> list[Message]:
    values = as_json(values)
    if not isinstance(values, list):
        return []
    return [found for value in values if (found := message(value))]


_FLATTENED = re.compile(r"(gen_ai\.prompt|gen_ai\.completion|llm\.input_messages|llm\.output_messages)\.(\d{1,6})\.(.+)")
_FLATTENED_TOOL = re.compile(r"tool_calls\.(\d{1,6})\.(?:tool_call\.)?(?:function\.)?(name|arguments|id)")
_FLATTENED_CONTENT = re.compile(r"contents\.(\d{1,6})\.message_content\.text")
_INPUT_PREFIXES = ("gen_ai.prompt", "llm.input_messages")


def _flattened_messages(attributes: dict[str, Any]) -> tuple[list[Message], list[Message]]:
    """OpenLLMetry's `gen_ai.prompt.0.role` and OpenInference's `llm.input_messages.0.message.role` style."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in attributes.items():
        match = _FLATTENED.fullmatch(key)
        if not match:
            continue
        prefix, index, rest = match.group(1), int(match.group(2)), match.group(3).removeprefix("message.")
        entry = found.setdefault((prefix, index), {"tool_calls": {}, "contents": {}})
        if tool := _FLATTENED_TOOL.fullmatch(rest):
            entry["tool_calls"].setdefault(int(tool.group(1)), {})[tool.group(2)] = value
        elif content := _FLATTENED_CONTENT.fullmatch(rest):
            entry["contents"][int(content.group(1))] = value
        elif rest in ("role", "content"):
            entry[rest] = value
    inputs: list[Message] = []
    outputs: list[Message] = []
    for (prefix, _), entry in sorted(found.items()):
        content = entry.get("content")
        if content is None and entry["contents"]:
            content = [entry["contents"][index] for index in sorted(entry["contents"])]
        calls = [entry["tool_calls"][index] for index in sorted(entry["tool_calls"])]
        default_role = "user" if prefix in _INPUT_PREFIXES else "assistant"
        value = {"role": entry.get("role") or default_role, "content": content, "tool_calls": calls}
        if (found_message := message(value)) is not None:
            (inputs if prefix in _INPUT_PREFIXES else outputs).append(found_message)
    return inputs, outputs


def _event_messages(span: Span) -> tuple[list[Message], list[Message]]:
    """Messages recorded as span events: the deprecated `gen_ai.*.message`/`gen_ai.choice` events, and
    the older `gen_ai.content.prompt`/`gen_ai.content.completion` ones."""
    inputs: list[Message] = []
    outputs: list[Message] = []
    for name, attributes in span.events:
        if name in _EVENT_ROLES:
            body = as_json(attributes.get("gen_ai.event.content"))
            value = {**attributes, **(body if isinstance(body, dict) else {}), "event.name": name}
            if isinstance(value.get("message"), str):
                value["message"] = as_json(value["message"])
            if (found := message(value)) is not None:
                (outputs if name == "gen_ai.choice" else inputs).append(found)
        elif name == "gen_ai.content.prompt":
            inputs += read_messages(attributes.get("gen_ai.prompt"))
        elif name == "gen_ai.content.completion":
            outputs += [
                found
                for value in _list(attributes.get("gen_ai.completion"))
                if isinstance(value, dict) and (found := message({"role": "assistant", **value}))
            ]
    return inputs, outputs


def _list(value: Any) -> list[Any]:
    value = as_json(value)
    return value if isinstance(value, list) else []


def span_messages(span: Span) -> tuple[list[Message], list[Message]]:
    """A request span's input and output messages, from whichever convention recorded them."""
    attributes = span.attributes
    inputs = read_messages(attributes.get("gen_ai.input.messages"))
    outputs = read_messages(attributes.get("gen_ai.output.messages"))
    if not inputs or not outputs:
        # pydantic-ai 0.x kept its events in one `events` attribute; choices are the outputs.
        events = _list(attributes.get("events"))
        event_inputs = [
            found
            for value in events
            if isinstance(value, dict) and value.get("event.name") != "gen_ai.choice" and (found := message(value))
        ]
        event_outputs = [
            found
            for value in events
            if isinstance(value, dict) and value.get("event.name") == "gen_ai.choice" and (found := message(value))
        ]
        for other_inputs, other_outputs in ((event_inputs, event_outputs), _event_messages(span), _flattened_messages(attributes)):
            inputs = inputs or other_inputs
            outputs = outputs or other_outputs
    return inputs, outputs
