"""One run's JSON (a run log, or a raw pydantic-ai message history) -> LogRecord, or a ParseError that says why.

The shapes handled here are the ones pydantic-ai users really write (docs/log-formats.md):
top-level `usage`/`output` or not, `model` or `model_name` (a repr such as "GroqModel()" gives way
to the responses), provider only in the responses, `system_prompt` as a string, a list or a repr,
streamed runs that repeat their final response, Gemini's empty thinking parts, old pydantic-ai
without usage, and `{role, content}` messages. Which format a file holds is core/formats.py's job.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from llm_monitoring.core.json_text import decode_text, json_type, load_json, too_deep
from llm_monitoring.core.limits import MAX_COUNT, MAX_NOTES, MAX_REQUESTS, USAGE_FIELDS, cost_problem, count_value, shown
from llm_monitoring.core.records import LogRecord, ParseError, ToolCall

# 3: a model or system prompt written as a Python repr gives way to what the messages say.
PARSER_VERSION = "3"

# pydantic-ai's output tool: its call carries the structured answer, it is not a tool the agent chose.
OUTPUT_TOOL_PREFIX = "final_result"

_RESPONSE_KINDS = {"response", "assistant", "model"}
_HISTORY_KINDS = {"request", "response"}
_REFERENCE_KEYS = ("references", "urls", "sources", "citations", "links")
_TEXT_KEYS = ("answer", "content", "text", "summary", "response", "result")
_PROVIDER_PREFIXES = {
    "openai",
    "anthropic",
    "google-gla",
    "google-vertex",
    "gemini",
    "groq",
    "mistral",
    "cohere",
    "bedrock",
    "deepseek",
    "openrouter",
    "ollama",
    "grok",
    "xai",
    "huggingface",
    "test",
}


def parse_run_log(raw: bytes, *, fallback_time: datetime | None = None) -> LogRecord:
    """Parse one run log. `fallback_time` dates a run whose log carries no timestamp at all."""
    return parse_log_bytes(raw, fallback_time=fallback_time)[1]


def parse_log_bytes(raw: bytes, *, fallback_time: datetime | None = None) -> tuple[str, LogRecord]:
    """Parse one run log and return its decoded text too, so the caller decodes each file once."""
    try:
        text, document = load_json_object(raw)
        return text, parse_run_document(document, fallback_time=fallback_time)
    except RecursionError as error:
        raise too_deep(error) from None


def load_json_object(raw: bytes) -> tuple[str, dict[str, Any]]:
    text = decode_text(raw)
    document, _ = load_json(text)
    if not isinstance(document, dict):
        raise ParseError(f"JSON is {json_type(document)}, not an object: not a run log")
    return text, document


def parse_run_document(document: dict[str, Any], *, fallback_time: datetime | None = None) -> LogRecord:
    messages = document.get("messages")
    if not isinstance(messages, list):
        keys = ", ".join(sorted(document)[:12]) or "none"
        found = "no 'messages' list" if messages is None else f"'messages' is {json_type(messages)}, not a list"
        hint = f"; {REPR_FIX}" if isinstance(messages, str) and looks_like_message_repr(messages.lstrip("[ ")) else ""
        raise ParseError(f"not a pydantic-ai run log: {found} (top-level keys: {keys}){hint}")
    _refuse_unreadable_messages(messages)
    normalized = list(normalized_messages(messages))
    responses = [message for message in normalized if message["kind"] in _RESPONSE_KINDS]
    requests = [message for message in normalized if message["kind"] not in _RESPONSE_KINDS]

    notes: list[str] = []  # values that cannot be kept as logged, with why (core/limits.py)
    input_tokens, output_tokens, cache_read, cache_write, request_count, reported_cost = _usage(document, responses, notes)
    started, finished = _run_window(document, normalized, fallback_time, notes)
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
        value_notes=tuple(dict.fromkeys(notes))[:MAX_NOTES],
    )


def parse_history(messages: list[Any], *, fallback_time: datetime | None = None) -> LogRecord:
    """A raw pydantic-ai message history (`result.all_messages_json()`, ModelMessagesTypeAdapter): no
    wrapper, so no agent name; model, provider, usage (summed over the responses), instructions and
    times all come from the messages."""
    return parse_run_document({"messages": messages}, fallback_time=fallback_time)


def is_message(value: Any) -> bool:
    """A pydantic-ai message as JSON: an object whose `kind` is "request" or "response"."""
    return isinstance(value, dict) and value.get("kind") in _HISTORY_KINDS


# How to fix a writer that saved str(message): said wherever such messages are refused.
REPR_FIX = (
    "save the messages as JSON with pydantic-ai's ModelMessagesTypeAdapter.dump_json(messages) "
    "(or result.all_messages_json()), not str(message)"
)
_MESSAGE_REPR = re.compile(r"(Model(Request|Response)|[A-Z]\w*Part)\(")


def looks_like_message_repr(text: str) -> bool:
    """A pydantic-ai message written with str()/repr(): "ModelRequest(parts=[UserPromptPart(...".

    Such text is not parsed: a repr holds datetimes, nested quotes and truncated reprs of
    arbitrary objects, and a half-read message would give checks computed from a part of the run."""
    return _MESSAGE_REPR.match(text) is not None


def _refuse_unreadable_messages(messages: list[Any]) -> None:
    """A message that is not a JSON object (null aside, which holds nothing) makes the whole run
    unreadable: tool calls or the answer may sit in it, and checks computed without them would lie."""
    unreadable = [(number, message) for number, message in enumerate(messages, 1) if message is not None and not isinstance(message, dict)]
    if not unreadable:
        return
    number, first = unreadable[0]
    types = list(dict.fromkeys(json_type(message) for _, message in unreadable))
    if len(unreadable) == 1:
        which = f"message {number} of {len(messages)} is {types[0]}, {shown(first)}"
    else:
        kinds = " or ".join(f"{name.split()[-1]}s" for name in types)  # "a string" -> "strings"
        which = f"{len(unreadable)} of {len(messages)} messages are {kinds} (message {number}: {shown(first)})"
    if isinstance(first, str) and looks_like_message_repr(first.lstrip()):
        raise ParseError(
            f"messages saved as Python reprs, not JSON objects: {which}; the run cannot be read reliably, so it is not stored; {REPR_FIX}"
        )
    raise ParseError(
        f"messages that are not JSON objects: {which}; a run log's messages are objects with 'parts' (pydantic-ai) or 'role' and 'content'"
    )


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
    part = {
        "part_kind": _ROLE_PART_KINDS.get(role, "user-prompt"),
        "content": message.get("content"),
        "timestamp": message.get("timestamp"),
    }
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


_Count = tuple[int | None, str | None]  # (count, None), (None, None) when not logged, (None, why) when invalid

# Per field of USAGE_FIELDS, the keys writers use: pydantic-ai < 1.0 said request_tokens/response_tokens,
# some writers say total_*_tokens or prompt/completion_tokens.
_USAGE_KEYS = (
    ("input_tokens", "request_tokens", "total_input_tokens", "prompt_tokens"),
    ("output_tokens", "response_tokens", "total_output_tokens", "completion_tokens"),
    ("cache_read_tokens",),
    ("cache_write_tokens",),
)


def _usage_numbers(usage: dict[str, Any]) -> list[_Count]:
    return [_first_count(usage, keys) for keys in _USAGE_KEYS]


def _first_count(mapping: dict[str, Any], keys: tuple[str, ...]) -> _Count:
    for key in keys:
        number, problem = count_value(mapping.get(key))
        if problem:
            return None, problem if key == keys[0] else f"{problem} (logged as {key})"
        if number is not None:
            return number, None
    return None, None


def _reports_usage(numbers: list[_Count]) -> bool:
    return any(number is not None or problem for number, problem in numbers[:2])


def _kept(numbers: list[_Count], notes: list[str]) -> list[int | None]:
    """The counts as stored: an invalid one becomes None, with a note; absent cache counts are 0."""
    kept: list[int | None] = []
    for index, (field, (number, problem)) in enumerate(zip(USAGE_FIELDS, numbers, strict=True)):
        if problem:
            notes.append(f"{field}: {problem}")
            kept.append(None)
        else:
            kept.append(number if number is not None or index < 2 else 0)
    return kept


def _usage(
    document: dict[str, Any], responses: list[dict[str, Any]], notes: list[str]
) -> tuple[int | None, int | None, int | None, int | None, int | None, Decimal | None]:
    reported_cost = _reported_cost(responses, notes)
    top = document.get("usage")
    if isinstance(top, dict):
        numbers = _usage_numbers(top)
        if _reports_usage(numbers):
            requests, problem = count_value(top.get("requests"), MAX_REQUESTS)
            if problem:
                notes.append(f"requests: {problem}")
            elif not requests:
                requests = len(responses)
            return (*_kept(numbers, notes), requests, reported_cost)  # type: ignore[return-value]
    totals = [0, 0, 0, 0]
    problems: list[str | None] = [None, None, None, None]
    reported = False
    for response in responses:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            continue
        numbers = _usage_numbers(usage)
        if not _reports_usage(numbers):
            continue
        # A failed response (Groq's finish_reason "error") carries all-zero usage: unknown, not free.
        if response.get("finish_reason") == "error" and not any(number or problem for number, problem in numbers):
            continue
        reported = True
        for index, (number, problem) in enumerate(numbers):
            problems[index] = problems[index] or problem
            totals[index] += number or 0
    if not reported:
        return None, None, None, None, len(responses), reported_cost
    summed = [
        (None, problem)
        if problem
        else (None, f"the responses add up to {total:,}, over {MAX_COUNT:,}, the largest count stored")
        if total > MAX_COUNT
        else (total, None)
        for total, problem in zip(totals, problems, strict=True)
    ]
    return (*_kept(summed, notes), len(responses), reported_cost)  # type: ignore[return-value]


def _reported_cost(responses: list[dict[str, Any]], notes: list[str]) -> Decimal | None:
    costs = []
    for response in responses:
        details = (response.get("usage") or {}).get("details") if isinstance(response.get("usage"), dict) else None
        if isinstance(details, dict) and isinstance(details.get("cost"), (int, float)) and not isinstance(details.get("cost"), bool):
            try:
                costs.append(Decimal(str(details["cost"])))
            except InvalidOperation:
                continue
    if not costs:
        return None
    problem = next(filter(None, map(cost_problem, costs)), None) or cost_problem(total := sum(costs, Decimal(0)))
    if problem:
        notes.append(f"provider_reported_cost: {problem}")
        return None
    return total


def _split_model_string(model: str) -> tuple[str | None, str]:
    """pydantic-ai model strings such as "openai:gpt-4o-mini" carry the provider before the colon."""
    prefix, colon, rest = model.partition(":")
    if colon and rest and prefix in _PROVIDER_PREFIXES:
        return prefix, rest
    return None, model


def _provider(document: dict[str, Any], responses: list[dict[str, Any]]) -> str | None:
    provider = _name(document.get("provider"))
    if provider:
        return provider
    for response in responses:
        name = _name(response.get("provider_name"))
        if name:
            return name
    model = _logged_model(document)
    return _split_model_string(model)[0] if model else None


def _model(document: dict[str, Any], responses: list[dict[str, Any]]) -> str | None:
    model = _logged_model(document)
    if model:
        return _split_model_string(model)[1]
    for response in reversed(responses):
        name = _name(response.get("model_name"))
        if name:
            return name
    # Older pydantic-ai wrote "OpenAIModel(model_name='gpt-4o', ...)": the name is in the repr.
    named = _MODEL_NAME_IN_REPR.search(str(document.get("model") or document.get("model_name") or ""))
    return named.group(1) if named else None


def _logged_model(document: dict[str, Any]) -> str | None:
    return _name(document.get("model")) or _name(document.get("model_name"))


# What a logger writes when it logs an object instead of its name: "GroqModel()", "OpenAIChatModel(...)",
# "<pydantic_ai.models.groq.GroqModel object at 0x7f...>", "<bound method Agent.system_prompt of Agent(...)>".
_PYTHON_REPR = re.compile(
    r"<(bound method|function|method|built-in (function|method)|lambda)\b.*>"
    r"|<[\w.]+ object at 0x[0-9a-fA-F]+>"
    r"|[A-Z][\w.]*\(.*\)",
    re.DOTALL,
)
_MODEL_NAME_IN_REPR = re.compile(r"model_name='([^'\s]+)'")


def looks_like_python_repr(text: str) -> bool:
    return _PYTHON_REPR.fullmatch(text.strip()) is not None


def _name(value: Any) -> str | None:
    """A logged name (model, provider, prompt), or None when it is empty or the repr of an object."""
    text = _text(value)
    return None if text is None or looks_like_python_repr(text) else text


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
    system_prompt = _system_prompt_list(document.get("system_prompt"))
    if isinstance(system_prompt, str):
        system_prompt = _name(system_prompt)  # a repr ("<bound method Agent.system_prompt ...>") says nothing
        if system_prompt:
            return system_prompt
    if isinstance(system_prompt, list):
        joined = "\n\n".join(item for item in system_prompt if isinstance(item, str) and _name(item))
        if joined:
            return joined
    parts = [_content_text(part.get("content")) for part in _parts(requests, "system-prompt")]
    joined = "\n\n".join(text for text in parts if text and text.strip())
    return joined or None


def _system_prompt_list(system_prompt: Any) -> Any:
    """A list of prompts written with str() ("['You are ...', 'Cite sources.']") read back as the list:
    a literal of strings is parsed exactly (ast.literal_eval evaluates no code)."""
    if not isinstance(system_prompt, str):
        return system_prompt
    text = system_prompt.strip()
    if not (text.startswith("[") and text.endswith("]") and text[1:2] in ("'", '"', "]")):
        return system_prompt
    try:
        items = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return system_prompt
    return items if isinstance(items, list) and all(isinstance(item, str) for item in items) else system_prompt


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
                    args = load_json(args)[0]
                except ParseError:
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
    document: dict[str, Any], messages: list[dict[str, Any]], fallback_time: datetime | None, notes: list[str]
) -> tuple[datetime | None, datetime | None]:
    stamps = [stamp for stamp in (_timestamp(value, notes) for value in _timestamps(messages)) if stamp]
    if not stamps:
        top = _timestamp(document.get("timestamp"), notes)
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


def _timestamp(value: Any, notes: list[str]) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A naive timestamp is taken as UTC: pydantic-ai writes UTC, hand-written samples omit the zone.
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    try:
        return stamp.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        notes.append(f"timestamp: {shown(value)} is outside the years 1 to 9999 in UTC; ignored")
        return None
