"""Poison log files, one per class of hostile input, with what the ingest must do with each.

Every file is written here from scratch. `expect` is "stored" (with the value problem noted or the
text repaired) or "quarantined"; `reason` is a piece of the stored reason or note that names the
problem. Some classes depend on the machine: a file without read permission can be read by root
(unless the reader runs without CAP_DAC_OVERRIDE), and a model name too long for a Postgres index
is no problem for SQLite.
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from llm_monitoring.file_names import name_text
from llm_monitoring.ingest import content_hash
from llm_monitoring.sources import LocalDirectorySource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.ledger import known_processed
from llm_monitoring.storage.schema import ingest_errors, llm_logs

REFUSED_AGENT = "refused_by_the_database"


@dataclass(frozen=True)
class Poison:
    name: str  # as the OS gives it (surrogate-escaped when not UTF-8)
    expect: str  # "stored", "quarantined" or "either"
    reason: str  # part of the ingest_errors reason (quarantined) or of value_notes / pricing_status (stored)
    column: str = ""  # for stored files: the llm_logs column that holds `reason`


def log_document(tag: str, **usage: object) -> dict:
    """A small valid pydantic-ai run log, unique per tag."""
    return {
        "agent_name": f"poison_{tag}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [
            {
                "kind": "request",
                "parts": [{"part_kind": "user-prompt", "content": f"question about {tag}", "timestamp": "2025-10-15T16:00:05+00:00"}],
            },
            {
                "kind": "response",
                "parts": [{"part_kind": "text", "content": f"an answer about {tag}"}],
                "usage": {"input_tokens": 100, "output_tokens": 20, **usage},
                "model_name": "gpt-4o-mini",
                "timestamp": "2025-10-15T16:00:06+00:00",
            },
        ],
    }


def log_bytes(tag: str, **usage: object) -> bytes:
    return json.dumps(log_document(tag, **usage)).encode()


def _with_literal(tag: str, key: str, literal: str) -> bytes:
    """A log whose usage `key` is written as `literal` (text json.dumps would never write)."""
    return log_bytes(tag, **{key: "@LITERAL@"}).replace(b'"@LITERAL@"', literal.encode())


def _with_timestamps(tag: str, stamp: str) -> bytes:
    document = log_document(tag)
    for message in document["messages"]:
        message["timestamp"] = stamp
        for part in message["parts"]:
            part["timestamp"] = stamp
    return json.dumps(document).encode()


def write_poison(folder: Path, *, postgres: bool, reader_bypasses_permissions: bool, outside: Path, max_log_bytes: int) -> list[Poison]:
    """Write one file of each poison class into `folder`; `outside` is a folder beyond it (for a symlink)."""
    poisons: list[Poison] = []

    def put(name: str | bytes, raw: bytes, expect: str, reason: str, column: str = "") -> None:
        path = os.path.join(os.fsencode(folder), name if isinstance(name, bytes) else name.encode())
        with open(path, "wb") as handle:
            handle.write(raw)
        poisons.append(Poison(os.fsdecode(os.path.basename(path)), expect, reason, column))

    # Numbers that do not fit the columns: stored, the value NULL with a note, never priced.
    put("int-beyond-64-bit.json", log_bytes("int64", input_tokens=2**70), "stored", "input_tokens", "value_notes")
    put("float-1e400.json", _with_literal("inf", "output_tokens", "1e400"), "stored", "not a finite number", "value_notes")
    put("float-1e308.json", _with_literal("huge", "input_tokens", "1e308"), "stored", "the largest count stored", "value_notes")
    put("nan-tokens.json", _with_literal("nan", "input_tokens", "NaN"), "stored", "not a finite number", "value_notes")
    put(
        "negative-tokens.json",
        log_bytes("negative", input_tokens=-5),
        "stored",
        "invalid_usage: input_tokens: -5 is negative",
        "pricing_status",
    )
    document = log_document("requests_top")
    document["usage"] = {"input_tokens": 10, "output_tokens": 5, "requests": 2**40}
    put("requests-top-over-int32.json", json.dumps(document).encode(), "stored", "requests:", "value_notes")
    document = log_document("cost", details={"cost": 1e300})
    put("reported-cost-1e300.json", json.dumps(document).encode(), "stored", "provider_reported_cost", "value_notes")
    # Timestamps that overflow when converted to UTC.
    put(
        "year-9999-minus-5h.json",
        _with_timestamps("y9999", "9999-12-31T23:00:00-05:00"),
        "stored",
        "outside the years 1 to 9999",
        "value_notes",
    )
    put("year-1-plus-5h.json", _with_timestamps("y1", "0001-01-01T01:00:00+05:00"), "stored", "outside the years 1 to 9999", "value_notes")
    # Text no UTF-8 encoder takes (stored with U+FFFD) and a NUL character (Postgres text cannot hold it).
    put(
        "lone-surrogate.json",
        log_bytes("surrogate").replace(b"question about", b"question \\udc80 about"),
        "stored",
        "\ufffd",
        "user_prompt",
    )
    put("nul-character.json", log_bytes("nul").replace(b"question about", b"question \\u0000 about"), "stored", "\ufffd", "user_prompt")
    # JSON nested deeper than Python can parse; and nested 1,000 deep in a tool call's arguments,
    # which orjson parses (it allows 1,024 levels) but json.dumps cannot write back.
    put("nested-100000-deep.json", b"[" * 100_000 + b"]" * 100_000, "quarantined", "nested too deeply")
    document = log_document("deep_args")
    document["messages"][1]["parts"].append({"part_kind": "tool-call", "tool_name": "search", "args": "@ARGS@"})
    nested = b"[" * 1_000 + b'"x"' + b"]" * 1_000
    put("deep-tool-args.json", json.dumps(document).encode().replace(b'"@ARGS@"', nested), "quarantined", "nested too deeply")
    # A model name too long for a Postgres index row: refused by the database (the per-run fallback).
    rng = random.Random(7)
    document = log_document("long_model")
    document["model"] = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(12_000))
    put(
        "model-name-12000-chars.json",
        json.dumps(document).encode(),
        "quarantined" if postgres else "stored",
        "index row" if postgres else "unknown_model",
        "" if postgres else "pricing_status",
    )
    # Names: not UTF-8 (good and bad content), and the longest a file system allows.
    put(b"run-\xff\xfe.json", log_bytes("non_utf8_name"), "stored", "", "")
    put(b"broken-\xff.json", b'{"messages": [', "quarantined", "truncated JSON")
    put("n" * 250 + ".json", log_bytes("long_name"), "stored", "", "")
    # Entries that are not regular files: never opened, moved to quarantine with what they are.
    os.mkfifo(folder / "fifo.json")
    poisons.append(Poison("fifo.json", "quarantined", "not a regular file: a FIFO"))
    (outside / "secret.json").write_bytes(log_bytes("outside"))
    os.symlink(outside / "secret.json", folder / "symlink-outside.json")
    poisons.append(Poison("symlink-outside.json", "quarantined", "symbolic link"))
    # A file the process may not read.
    put(
        "unreadable.json",
        log_bytes("unreadable"),
        "stored" if reader_bypasses_permissions else "quarantined",
        "" if reader_bypasses_permissions else "PermissionError while reading",
    )
    os.chmod(folder / "unreadable.json", 0)
    # The classes the ingest always quarantined.
    put("empty.json", b"", "quarantined", "empty file")
    put("latin1.json", '{"messages": [], "agent_name": "caf\xe9"}'.encode("latin-1"), "quarantined", "not valid UTF-8")
    put("array.json", b"[1, 2]", "quarantined", "a JSON array whose first element is a number")
    put("truncated.json", b'{"agent_name": "a", "messages": [{"parts": [', "quarantined", "truncated JSON")
    put("foreign.json", b'{"question": "q", "answer": "a"}', "quarantined", "no 'messages' list")
    put("too-big.json", log_bytes("big").replace(b"an answer", b"an answer " + b"x" * max_log_bytes), "quarantined", "over MAX_LOG_BYTES")
    return poisons


def reader_bypasses_permissions(folder: Path) -> bool:
    """Whether this process reads a file it has no permission for (root with CAP_DAC_OVERRIDE)."""
    probe = folder / ".permission-probe"
    probe.write_bytes(b"x")
    os.chmod(probe, 0)
    try:
        probe.read_bytes()
        return True
    except PermissionError:
        return False
    finally:
        probe.unlink()


def install_refusal(url: str) -> None:
    """Make the database itself refuse runs of REFUSED_AGENT (a CHECK constraint, a trigger on SQLite):
    a value the database refuses in the bulk write, whatever the value."""
    database = Database(url)
    database.ensure_schema()
    with database.transaction() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                f"ALTER TABLE llm_logs ADD CONSTRAINT refuse_poison CHECK (agent_name IS DISTINCT FROM '{REFUSED_AGENT}')"
            )
        else:
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_poison BEFORE INSERT ON llm_logs WHEN NEW.agent_name = '{REFUSED_AGENT}' "
                f"BEGIN SELECT RAISE(ABORT, 'runs of {REFUSED_AGENT} are refused'); END"
            )
    database.dispose()


def refused_by_the_database(folder: Path) -> Poison:
    document = log_document("refused")
    document["agent_name"] = REFUSED_AGENT
    (folder / "refused-by-the-database.json").write_bytes(json.dumps(document).encode())
    return Poison("refused-by-the-database.json", "quarantined", "while storing")


def file_contents(folder: Path) -> dict[str, bytes]:
    """Bytes of every readable regular file under `folder`, by content hash."""
    contents = {}
    for directory, _, names in os.walk(os.fsencode(folder)):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.R_OK):
                with open(path, "rb") as handle:
                    raw = handle.read()
                contents[content_hash(raw)] = raw
    return contents


def assert_outcome(url: str, folder: Path, good: set[str], poisons: list[Poison], before: dict[str, bytes]) -> None:
    """All good runs stored once, each poison file stored or quarantined with a reason naming its
    problem, nothing pending, and every file's bytes still in the folder."""
    database = Database(url)
    try:
        with database.connect() as connection:
            rows = {row.filepath: row for row in connection.execute(sa.select(llm_logs))}
            errors = {row.filepath: row for row in connection.execute(sa.select(ingest_errors))}
        hashes = [row.content_hash for row in rows.values()]
        assert len(hashes) == len(set(hashes)), "a content stored twice"
        assert good <= set(hashes), f"{len(good - set(hashes))} good logs not stored"
        for poison in poisons:
            path = name_text(os.path.join(str(folder), poison.name))
            if poison.expect == "stored":
                assert path in rows and path not in errors, f"{poison.name}: not stored ({errors.get(path)})"
                if poison.column:
                    assert poison.reason in (getattr(rows[path], poison.column) or ""), f"{poison.name}: {rows[path]}"
            else:
                assert path in errors and path not in rows, f"{poison.name}: not quarantined"
                error = errors[path]
                assert poison.reason in error.error, f"{poison.name}: {error.error}"
                quarantined = os.path.join(str(folder), "_quarantine", poison.name)
                assert os.path.lexists(quarantined) and error.quarantined_as == name_text(quarantined)
        assert len(rows) == len(good) + sum(poison.expect == "stored" for poison in poisons)
        pending = LocalDirectorySource(folder).list_pending(partial(known_processed, database))
        assert pending == [], f"still pending: {[log_file.name for log_file in pending]}"
    finally:
        database.dispose()
    after = file_contents(folder)
    assert set(before) <= set(after), "a file's bytes are gone"


def age_all(folder: Path, rng: random.Random) -> None:
    """Give every entry a random mtime in the last hour, so poison files land in every batch."""
    now = time.time()
    for name in os.listdir(os.fsencode(folder)):
        moment = now - rng.uniform(60, 3600)
        os.utime(os.path.join(os.fsencode(folder), name), (moment, moment), follow_symlinks=False)
