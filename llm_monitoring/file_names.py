"""File names as the OS gives them, and as text: one reversible text form, and names that fit.

A Linux file name is any bytes but "/" and NUL. Python lists the bytes that are not UTF-8 as lone
surrogates (U+DC80..U+DCFF, "surrogateescape"), which no database, JSON config or log line can
carry. `name_text` gives every name one text form that is valid UTF-8 and one line: undecodable
bytes and control characters become `\\xNN`, and a backslash is doubled only where it would
otherwise read as such an escape, so every ordinary name is its own text form. `name_from_text`
reverses it exactly. The database, run configs and messages all use the text form.
"""

from __future__ import annotations

import hashlib
import os
import re

NAME_MAX_BYTES = 255  # NAME_MAX of Linux file systems: one path component, in bytes

_HEX = "0123456789abcdefABCDEF"
# A suffix longer than this is not an extension worth keeping when a name must be shortened.
_MAX_KEPT_SUFFIX_BYTES = 32
_HASH_CHARS = 12


def _escaped(char: str) -> str | None:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode gives it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate (never from the OS; from hand-typed config)
        return f"\\u{code:04x}"
    return None


def _escape_at(text: str, index: int) -> tuple[str, int] | None:
    """The character an escape at text[index] stands for and the escape's length, if it is one."""
    if text.startswith("\\\\", index):
        return "\\", 2
    if text.startswith("\\x", index) and index + 4 <= len(text) and all(c in _HEX for c in text[index + 2 : index + 4]):
        value = int(text[index + 2 : index + 4], 16)
        if value >= 0x80:
            return chr(0xDC00 + value), 4
        if value < 0x20 or value == 0x7F:
            return chr(value), 4
    if text.startswith("\\u", index) and index + 6 <= len(text) and all(c in _HEX for c in text[index + 2 : index + 6]):
        value = int(text[index + 2 : index + 6], 16)
        if 0xD800 <= value <= 0xDFFF and not 0xDC80 <= value <= 0xDCFF:
            return chr(value), 6
    return None


def name_text(name: str) -> str:
    """The text form of a name or path: valid UTF-8, one line, and `name` itself when it is ordinary."""
    if name.isprintable() and "\\" not in name:
        return name  # the common case, without a character loop
    pieces = [_escaped(char) or char for char in name]
    for index in range(len(pieces) - 1, -1, -1):
        # A literal backslash is doubled only where the text after it would read as an escape.
        if pieces[index] == "\\" and _escape_at("\\" + "".join(pieces[index + 1 : index + 6]), 0):
            pieces[index] = "\\\\"
    return "".join(pieces)


def name_from_text(text: str) -> str:
    """The name whose text form is `text` (the exact inverse of name_text)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    index = 0
    while index < len(text):
        escape = _escape_at(text, index) if text[index] == "\\" else None
        if escape:
            out.append(escape[0])
            index += escape[1]
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def fitting_name(name: str) -> str:
    """`name`, or when it is over NAME_MAX_BYTES a shorter one: the start of its stem, `~`, a hash
    of the whole name (so two long names never shorten to the same one), and its suffix."""
    if name_bytes(name) <= NAME_MAX_BYTES:
        return name
    stem, suffix = os.path.splitext(name)
    if name_bytes(suffix) > _MAX_KEPT_SUFFIX_BYTES:
        stem, suffix = name, ""
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_CHARS]
    budget = NAME_MAX_BYTES - name_bytes(tag + suffix)
    kept: list[str] = []
    used = 0
    for char in stem:  # whole characters, so a UTF-8 name stays UTF-8
        size = name_bytes(char)
        if used + size > budget:
            break
        kept.append(char)
        used += size
    return "".join(kept) + tag + suffix


def numbered_name(name: str, number: int) -> str:
    """`name` with a counter before its suffix (run.json -> run.2.json), fitted to NAME_MAX_BYTES."""
    if number == 0:
        return fitting_name(name)
    stem, suffix = os.path.splitext(name)
    return fitting_name(f"{stem}.{number}{suffix}")


_SEPARATORS = re.compile(r"[/\x00]")


def plain_name_problem(name: str) -> str | None:
    """Why `name` is not the name of an entry directly in a folder, or None when it is."""
    if not name:
        return "an empty name"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if _SEPARATORS.search(name):
        return "a path, not a file name (it contains '/')" if "/" in name else "it contains a NUL character"
    return None
