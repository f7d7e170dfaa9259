"""A run log's messages as a readable timeline: user prompt, tool calls with their returns, answer.

Pure: takes the stored raw JSON text and returns plain records for the review app to render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llm_monitoring.core.parsing import OUTPUT_TOOL_PREFIX, normalized_messages


@dataclass(frozen=True)
class TimelineEntry:
    """One step of a run. `kind` is one of: system, user, tool_call, tool_return, retry, thinking, answer."""

    kind: str
    content: str
    timestamp: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    model: str | None = None


def message_timeline(raw_json: str | None) -> list[TimelineEntry]:
    """The steps of a run log or message history in message order; [] when the text is neither."""
    if not raw_json:
        return []
    try:
        document = json.loads(raw_json)
    except json.JSONDecodeError:
        return []
    # A run log holds its messages in "messages"; a raw pydantic-ai history is the list itself.
    messages = document.get("messages") if isinstance(document, dict) else document
    if not isinstance(messages, list):
        return []
    entries: list[TimelineEntry] = []
    for message in normalized_messages(messages):
        model = message.get("model_name") if isinstance(message.get("model_name"), str) else None
        for part in message["parts"]:
            entry = _entry(part, message, model)
            if entry is not None:
                entries.append(entry)
    return entries


def _entry(part: Any, message: dict[str, Any], model: str | None) -> TimelineEntry | None:
    if not isinstance(part, dict):
        return None
    part_kind = part.get("part_kind")
    timestamp = part.get("timestamp") or message.get("timestamp")
    timestamp = timestamp if isinstance(timestamp, str) else None
    tool_name = part.get("tool_name") if isinstance(part.get("tool_name"), str) else None
    tool_call_id = part.get("tool_call_id") if isinstance(part.get("tool_call_id"), str) else None
    if part_kind == "system-prompt":
        return _text_entry("system", part.get("content"), timestamp)
    if part_kind == "user-prompt":
        return _text_entry("user", part.get("content"), timestamp)
    if part_kind in ("text",):
        return _text_entry("answer", part.get("content"), timestamp, model=model)
    if part_kind == "thinking":
        return _text_entry("thinking", part.get("content"), timestamp, model=model)
    if part_kind in ("tool-call", "builtin-tool-call"):
        if tool_name and tool_name.startswith(OUTPUT_TOOL_PREFIX):
            # pydantic-ai's output tool: its arguments are the structured answer.
            return TimelineEntry("answer", render_value(part.get("args")), timestamp, tool_name, tool_call_id, model)
        return TimelineEntry("tool_call", render_value(part.get("args")), timestamp, tool_name, tool_call_id, model)
    if part_kind in ("tool-return", "builtin-tool-return"):
        if tool_name and tool_name.startswith(OUTPUT_TOOL_PREFIX):
            return None
        return TimelineEntry("tool_return", render_value(part.get("content")), timestamp, tool_name, tool_call_id)
    if part_kind == "retry-prompt":
        return TimelineEntry("retry", render_value(part.get("content")), timestamp, tool_name, tool_call_id)
    return None


def _text_entry(kind: str, content: Any, timestamp: str | None, *, model: str | None = None) -> TimelineEntry | None:
    text = render_value(content)
    if not text.strip():
        return None  # Gemini writes empty thinking parts; they say nothing
    return TimelineEntry(kind, text, timestamp, model=model)


def render_value(value: Any) -> str:
    """Text as is; JSON given as a string or as a value, pretty-printed."""
    if value is None:
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
            try:
                return json.dumps(json.loads(stripped), ensure_ascii=False, indent=2)
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)
