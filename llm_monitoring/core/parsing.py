"""Run-log JSON (bytes) -> LogRecord, or a ParseError that says why.

The shapes handled here are the ones pydantic-ai users really write (see the README's
"Log formats" section): top-level `usage`/`output` or not, provider only in the responses,
`system_prompt` as a string or a list, streamed runs that repeat their final response,
Gemini's empty thinking parts, old pydantic-ai without usage, and `{role, content}` messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from llm_monitoring.core.records import LogRecord, ParseError, ToolCall

PARSER_VERSION = "2"

# pydantic-ai's output tool: its call carries the structured answer, it is not a tool the agent chose.
OUTPUT_TOOL_PREFIX = "final_result"

_RESPONSE_KINDS = {"response", "assistant", "model"}
_REFERENCE_KEYS = ("references", "urls", "sources", "citations", "links")
_TEXT_KEYS = ("answer", "content", "text", "summary", "response", "result")
_PROVIDER_PREFIXES = {
    "openai", "anthropic", "google-gla", "google-vertex", "gemini", "groq", "mistral", "cohere",
    "bedrock", "deepseek", "openrouter", "ollama", "grok", "xai", "huggingface", "test",
}


def parse_run_log(raw: bytes, *, fallback_time: datetime | None = None) -> LogRecord:
    """Parse one run log. `fallback_time` dates a run whose log carries no timestamp at all."""
    return parse_log_bytes(raw, fallback_time=fallback_time)[1]


def parse_log_bytes(raw: bytes, *, fallback_time: datetime | None = None) -> tuple[str, LogRecord]:
    """Parse one run log and return its decoded text too, so the caller decodes each file once."""
    text, document = load_json_object(raw)
    return text, parse_run_document(document, fallback_time=fallback_time)


def load_json_object(raw: bytes) -> tuple[str, dict[str, Any]]:
    if not raw.strip():
        raise ParseError("empty file" if not raw else "file holds only white space")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParseError(f"not valid UTF-8: byte {error.start} ({raw[error.start:error.start + 1]!r})") from None
    return text, _json_object(text)


def parse_run_text(text: str, *, fallback_time: datetime | None = None) -> LogRecord:
    """Parse a run log already held as text (a stored raw_json), without encoding it back to bytes."""
    return parse_run_document(_json_object(text), fallback_time=fallback_time)


def _json_object(text: str) -> dict[str, Any]:
    try:
        document = _loads(text)
    except json.JSONDecodeError as error:
        if error.pos >= len(text.rstrip()):
            raise ParseError(
                f"truncated JSON: the document ends early (line {error.lineno}, column {error.colno}: {error.msg}); "
                "the writer probably stopped mid-file"
            ) from None
        raise ParseError(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    if not isinstance(document, dict):
        raise ParseError(f"JSON is {_json_type(document)}, not an object: not a run log")
    return document


def parse_run_document(document: dict[str, Any], *, fallback_time: datetime | None = None) -> LogRecord:
    messages = document.get("messages")
    if not isinstance(messages, list):
        keys = ", ".join(sorted(document)[:12]) or "none"
        found = "no 'messages' list" if messages is None else f"'messages' is {_json_type(messages)}, not a list"
        raise ParseError(f"not a pydantic-ai run log: {found} (top-level keys: {keys})")
    normalized = list(normalized_messages(messages))
    responses = [message for message in normalized if message["kind"] in _RESPONSE_KINDS]
    requests = [message for message in normalized if message["kind"] not in _RESPONSE_KINDS]

    input_tokens, output_tokens, cache_read, cache_write, request_count, reported_cost = _usage(document, responses)
    started, finished = _run_window(document, normalized, fallback_time)
    answer, references = _answer(document, responses)
    return LogRecord(
        agent_name=_text(document.get("agent_name")) or _text(document.get("name")),
        provider=_provider(document, responses),
        model=_model(document, responses),
        user_prompt=_user_prompt(document, requests),
        instructions=_instructions(document, requests),
        assistant_answer=answer,
        answer_references=references,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        requests=request_count,
        tool_calls=tuple(_tool_calls(responses)),
        finish_reasons=tuple(_finish_reasons(responses)),
        run_started_at=started,
        run_finished_at=finished,
        provider_reported_cost=reported_cost,
    )


def _loads(text: str) -> Any:
    # orjson parses these logs in about half the json module's time. What it rejects and
    # the json module accepts (NaN, Infinity, lone surrogates) takes the slow path, which also gives
    # the precise error for a broken file. (It reads integers over 64 bits as floats; no count in a
    # run log comes near that, and raw_json keeps the text as written.)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


# Part kinds of `{role, content}` messages, written by hand or by chat-style loggers.
_ROLE_PART_KINDS = {"user": "user-prompt", "system": "system-prompt", "assistant": "text", "tool": "tool-return"}


def normalized_messages(messages: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The messages of a log in order, each with a `kind` and `parts` whatever the writer used, and
    each provider response once (streamed runs repeat their final response)."""
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, dict):
            continue
        message = _normalize_message(message)
        response_id = message.get("provider_response_id")
        if message["kind"] in _RESPONSE_KINDS and isinstance(response_id, str) and response_id:
            if response_id in seen:
                continue
            seen.add(response_id)
        yield message


def _normalize_message(message: dict[str, Any]) -> dict[str, Any]:
    if isinstance(message.get("parts"), list):
        kind = message.get("kind") or ("response" if message.get("role") == "assistant" else "request")
        return {**message, "kind": kind}
    role = message.get("role")
    kind = "response" if role == "assistant" else "request"
    part = {"part_kind": _ROLE_PART_KINDS.get(role, "user-prompt"), "content": message.get("content"), "timestamp": message.get("timestamp")}
    return {**message, "kind": kind, "parts": [part]}


def _parts(messages: Iterable[dict[str, Any]], *kinds: str) -> Iterator[dict[str, Any]]:
    for message in messages:
        for part in message["parts"]:
            if isinstance(part, dict) and part.get("part_kind") in kinds:
                yield part


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = [item if isinstance(item, str) else item.get("text") for item in content if isinstance(item, (str, dict))]
        joined = "\n".join(piece for piece in pieces if isinstance(piece, str))
        return joined or None
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _usage_numbers(usage: dict[str, Any]) -> tuple[int | None, int | None, int, int]:
    # pydantic-ai < 1.0 said request_tokens/response_tokens; some writers say total_*_tokens.
    input_tokens = _first_int(usage, "input_tokens", "request_tokens", "total_input_tokens", "prompt_tokens")
    output_tokens = _first_int(usage, "output_tokens", "response_tokens", "total_output_tokens", "completion_tokens")
    cache_read = _first_int(usage, "cache_read_tokens") or 0
    cache_write = _first_int(usage, "cache_write_tokens") or 0
    return input_tokens, output_tokens, cache_read, cache_write


def _first_int(mapping: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = _int(mapping.get(key))
        if value is not None:
            return value
    return None


def _usage(
    document: dict[str, Any], responses: list[dict[str, Any]]
) -> tuple[int | None, int | None, int | None, int | None, int, Decimal | None]:
    reported_cost = _reported_cost(responses)
    top = document.get("usage")
    if isinstance(top, dict):
        input_tokens, output_tokens, cache_read, cache_write = _usage_numbers(top)
        if input_tokens is not None or output_tokens is not None:
            requests = _int(top.get("requests")) or len(responses)
            return input_tokens, output_tokens, cache_read, cache_write, requests, reported_cost
    totals = [0, 0, 0, 0]
    reported = False
    for response in responses:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            continue
        numbers = _usage_numbers(usage)
        if numbers[0] is None and numbers[1] is None:
            continue
        # A failed response (Groq's finish_reason "error") carries all-zero usage: unknown, not free.
        if response.get("finish_reason") == "error" and not any(numbers):
            continue
        reported = True
        for index, number in enumerate(numbers):
            totals[index] += number or 0
    if not reported:
        return None, None, None, None, len(responses), reported_cost
    return totals[0], totals[1], totals[2], totals[3], len(responses), reported_cost


def _reported_cost(responses: list[dict[str, Any]]) -> Decimal | None:
    costs = []
    for response in responses:
        details = (response.get("usage") or {}).get("details") if isinstance(response.get("usage"), dict) else None
        if isinstance(details, dict) and isinstance(details.get("cost"), (int, float)) and not isinstance(details.get("cost"), bool):
            try:
                costs.append(Decimal(str(details["cost"])))
            except InvalidOperation:
                continue
    return sum(costs, Decimal(0)) if costs else None


def _split_model_string(model: str) -> tuple[str | None, str]:
    """pydantic-ai model strings such as "openai:gpt-4o-mini" carry the provider before the colon."""
    prefix, colon, rest = model.partition(":")
    if colon and rest and prefix in _PROVIDER_PREFIXES:
        return prefix, rest
    return None, model


def _provider(document: dict[str, Any], responses: list[dict[str, Any]]) -> str | None:
    provider = _text(document.get("provider"))
    if provider:
        return provider
    for response in responses:
        name = _text(response.get("provider_name"))
        if name:
            return name
    model = _text(document.get("model"))
    return _split_model_string(model)[0] if model else None


def _model(document: dict[str, Any], responses: list[dict[str, Any]]) -> str | None:
    model = _text(document.get("model"))
    if model:
        return _split_model_string(model)[1]
    for response in reversed(responses):
        name = _text(response.get("model_name"))
        if name:
            return name
    return None


def _user_prompt(document: dict[str, Any], requests: list[dict[str, Any]]) -> str | None:
    for part in _parts(requests, "user-prompt"):
        text = _content_text(part.get("content"))
        if text and text.strip():
            return text
    return _text(document.get("user_prompt")) or _text(document.get("query")) or _text(document.get("question"))


def _instructions(document: dict[str, Any], requests: list[dict[str, Any]]) -> str | None:
    for message in requests:
        text = _text(message.get("instructions"))
        if text:
            return text
    system_prompt = document.get("system_prompt")
    if isinstance(system_prompt, str) and system_prompt.strip():
        return system_prompt
    if isinstance(system_prompt, list):
        joined = "\n\n".join(item for item in system_prompt if isinstance(item, str) and item.strip())
        if joined:
            return joined
    parts = [_content_text(part.get("content")) for part in _parts(requests, "system-prompt")]
    joined = "\n\n".join(text for text in parts if text and text.strip())
    return joined or None


def _tool_calls(responses: list[dict[str, Any]]) -> Iterator[ToolCall]:
    for part in _parts(responses, "tool-call", "builtin-tool-call"):
        name = part.get("tool_name")
        if not isinstance(name, str) or name.startswith(OUTPUT_TOOL_PREFIX):
            continue
        args = part.get("args")
        yield ToolCall(
            tool_name=name,
            args=args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, default=str),
            tool_call_id=part.get("tool_call_id"),
        )


def _finish_reasons(responses: list[dict[str, Any]]) -> Iterator[str]:
    for response in responses:
        reason = response.get("finish_reason")
        if not reason and isinstance(response.get("provider_details"), dict):
            reason = response["provider_details"].get("finish_reason")
        if isinstance(reason, str) and reason:
            yield reason


def _answer(document: dict[str, Any], responses: list[dict[str, Any]]) -> tuple[str | None, tuple[str, ...]]:
    output = document.get("output")
    if isinstance(output, str) and output.strip():
        return output, ()
    if isinstance(output, dict) and output:
        return render_structured_output(output)
    for part in reversed(list(_parts(responses, "text"))):
        text = _content_text(part.get("content"))
        if text and text.strip():
            return text, ()
    for part in reversed(list(_parts(responses, "tool-call"))):
        if str(part.get("tool_name", "")).startswith(OUTPUT_TOOL_PREFIX):
            args = part.get("args")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    return (args or None), ()
            if isinstance(args, dict):
                return render_structured_output(args)
    return _text(document.get("response")), ()


def render_structured_output(output: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """Render a structured (dict) answer as readable markdown, keeping its references."""
    lines: list[str] = []
    references: list[str] = []
    for key in ("title", "keyword", "heading"):
        if _text(output.get(key)):
            lines += [f"# {output[key].strip()}", ""]
            break
    for key in _TEXT_KEYS:
        if _text(output.get(key)):
            lines += [output[key].strip(), ""]
    for section in output.get("sections") or []:
        if not isinstance(section, dict):
            continue
        if _text(section.get("heading")) or _text(section.get("title")):
            lines += [f"## {(section.get('heading') or section.get('title')).strip()}", ""]
        for key in _TEXT_KEYS:
            if _text(section.get(key)):
                lines += [section[key].strip(), ""]
        section_refs = _references(section)
        references += section_refs
        if section_refs:
            lines += ["Sources: " + "; ".join(section_refs), ""]
    top_refs = _references(output)
    references += top_refs
    if top_refs:
        lines += ["## References", ""] + [f"- {reference}" for reference in top_refs] + [""]
    rendered = "\n".join(lines).strip()
    if not rendered:
        rendered = json.dumps(output, ensure_ascii=False, indent=2, default=str)
    return rendered, tuple(dict.fromkeys(references))


def _references(container: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in _REFERENCE_KEYS:
        items = container.get(key)
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, str) and item.strip():
                found.append(item.strip())
            elif isinstance(item, dict):
                label = item.get("title") or item.get("name")
                target = item.get("url") or item.get("filename") or item.get("path") or item.get("link")
                if label and target:
                    found.append(f"{label} ({target})")
                elif label or target:
                    found.append(str(label or target))
    return found


def _run_window(
    document: dict[str, Any], messages: list[dict[str, Any]], fallback_time: datetime | None
) -> tuple[datetime | None, datetime | None]:
    stamps = [stamp for stamp in (_timestamp(value) for value in _timestamps(messages)) if stamp]
    if not stamps:
        top = _timestamp(document.get("timestamp"))
        stamps = [top] if top else ([fallback_time] if fallback_time else [])
    if not stamps:
        return None, None
    return min(stamps), max(stamps)


def _timestamps(messages: list[dict[str, Any]]) -> Iterator[Any]:
    for message in messages:
        yield message.get("timestamp")
        for part in message["parts"]:
            if isinstance(part, dict):
                yield part.get("timestamp")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A naive timestamp is taken as UTC: pydantic-ai writes UTC, hand-written samples omit the zone.
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)
