"""JSON text as logs are written -> Python values, and values -> the canonical text that identifies them.

orjson parses these logs in about half the json module's time. What it rejects and the json module
accepts (NaN, Infinity, 1e400, lone surrogates) takes the slow path, which also gives the precise error
for a broken document. (orjson reads integers over 64 bits as floats; either way core/limits.py
refuses such counts, and the stored text keeps them as written.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import orjson

from llm_monitoring.core.records import ParseError


def decode_text(raw: bytes) -> str:
    """A file's bytes as text, or a ParseError for an empty, blank or non-UTF-8 file."""
    if not raw.strip():
        raise ParseError("empty file" if not raw else "file holds only white space")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParseError(f"not valid UTF-8: byte {error.start} ({raw[error.start : error.start + 1]!r})") from None


def load_json(text: str, *, one_line: bool = False) -> tuple[Any, bool]:
    """The value of a JSON text and whether it is exact: False when the json module read it, so it may
    hold NaN or Infinity, which the canonical text must then keep (see canonical_json).

    `one_line` words the errors for a line of a JSON Lines file rather than for a whole file."""
    try:
        return orjson.loads(text), True
    except orjson.JSONDecodeError as error:
        # orjson sees the end of an unterminated string as the end of the data; the json module
        # points at the string's start, and its message alone cannot tell a cut text from a bad one.
        ends_early = error.msg.startswith("unexpected end of data")
    try:
        return _without_lone_surrogates(json.loads(text)), False
    except json.JSONDecodeError as error:
        raise ParseError(json_error_reason(error, text, one_line=one_line, ends_early=ends_early)) from None
    except RecursionError as error:
        raise too_deep(error) from None


def json_error_reason(error: json.JSONDecodeError, text: str, *, one_line: bool = False, ends_early: bool = False) -> str:
    truncated = ends_early or error.pos >= len(text.rstrip())
    if one_line:
        where = f"column {error.colno}: {error.msg}"
        if truncated:
            return f"truncated JSON: the line ends early ({where}); the writer probably stopped mid-line"
        return f"invalid JSON at {where}"
    if truncated:
        return (
            f"truncated JSON: the document ends early (line {error.lineno}, column {error.colno}: {error.msg}); "
            "the writer probably stopped mid-file"
        )
    return f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"


def too_deep(error: RecursionError) -> ParseError:
    return ParseError(f"JSON nested too deeply to process (RecursionError: {error})")


def canonical_json(value: Any, *, exact: bool = True) -> str:
    """The one text of a value, whatever spacing or key order it was written with: sorted keys, no spaces.

    orjson would write NaN as null and refuses integers over 64 bits, so a value read by the json module
    (`exact=False`) holding one of those is written by the json module instead, keeping it as logged."""
    if exact or not _holds_non_finite(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # an integer over 64 bits
            pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _holds_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """json.loads turns an escaped lone surrogate ("\\udc80", as JavaScript writes a string cut inside
    an emoji) into a character no UTF-8 text can hold. It becomes U+FFFD, as a broken character
    shows anywhere else. Iterative: a document can be nested as deep as json.loads allows."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        container = stack.pop()
        keys = range(len(container)) if isinstance(container, list) else list(container)
        for key in keys:
            item = container[key]
            if isinstance(item, str):
                if _LONE_SURROGATE.search(item):
                    container[key] = _LONE_SURROGATE.sub("\ufffd", item)
            elif isinstance(item, (dict, list)):
                stack.append(item)
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                container[_LONE_SURROGATE.sub("\ufffd", key)] = container.pop(key)
    return value
