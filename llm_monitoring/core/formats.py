"""PLACEHOLDER until the formats module lands."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from llm_monitoring.core.parsing import parse_log_bytes, parse_run_document, parse_run_text
from llm_monitoring.core.records import ParsedRun, RunFailure


@dataclass(frozen=True)
class FileRead:
    format: str
    detection: str
    runs: tuple
    failures: tuple
    spans: tuple
    consumed: int
    appendable: bool


def read_log(raw, *, name, final, fallback_time=None):
    if name.endswith((".jsonl", ".ndjson")):
        return read_json_lines(raw, first_line=1, final=final, fallback_time=fallback_time)
    text, record = parse_log_bytes(raw, fallback_time=fallback_time)
    return FileRead("run log", "object", (ParsedRun(hashlib.sha256(raw).hexdigest(), text, record, "file", ""),), (), (), len(raw), False)


def read_json_lines(raw, *, first_line, final, fallback_time=None):
    end = raw.rfind(b"\n") + 1
    if final and end < len(raw):
        end = len(raw)
    runs, failures = [], []
    for number, line in enumerate(raw[:end].splitlines(), start=first_line):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            key = hashlib.sha256(text.encode()).hexdigest()
            runs.append(ParsedRun(key, text, parse_run_document(value, fallback_time=fallback_time), "file", f"line {number}"))
        except Exception as error:
            failures.append(RunFailure(hashlib.sha256(line).hexdigest(), f"line {number}", str(error)))
    return FileRead("JSON Lines", "lines", tuple(runs), tuple(failures), (), end, True)


def parse_stored_run(text, *, fallback_time=None):
    return parse_run_text(text, fallback_time=fallback_time)
