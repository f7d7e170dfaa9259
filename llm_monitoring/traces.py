"""OpenTelemetry traces across lines and files: spans of a trace not complete yet wait in the database
(waiting_spans) until the rest arrives or the trace goes quiet; then its runs are stored once.

A run from a trace is identified by its trace and agent-run span ids, whichever files its spans came
in, so a trace assembled twice (a retry, two workers, a late span) never makes two rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_monitoring.core.otlp import assemble_runs
from llm_monitoring.core.records import ParsedRun, RunFailure
from llm_monitoring.storage.cursors import drop_staged_traces, quiet_traces, stage_spans, staged_spans
from llm_monitoring.storage.engine import Database


@dataclass
class Assembly:
    """What the spans of a batch (with those waiting from earlier) give."""

    runs: list[tuple[ParsedRun, str]] = field(default_factory=list)  # (run, file whose spans completed it)
    failures: list[tuple[RunFailure, str]] = field(default_factory=list)
    waiting: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # spans to keep, with their file
    completed: set[str] = field(default_factory=set)  # traces whose waiting spans can go once the runs are stored


def assemble(database: Database, spans: Sequence[tuple[dict[str, Any], str]]) -> Assembly:
    """Runs of the traces the spans complete, together with the spans of those traces already waiting."""
    assembly = Assembly()
    if not spans:
        return assembly
    file_of_trace = {span["traceId"]: filepath for span, filepath in spans}
    earlier = staged_spans(database, file_of_trace)
    runs, failures, waiting, _ = assemble_runs([*earlier, *(span for span, _ in spans)], flush=False)
    first_file = spans[0][1]  # a span that could not be placed names no trace: the batch's first file
    assembly.runs = [(run, file_of_trace.get(_trace_of(run.where), first_file)) for run in runs]
    assembly.failures = [(failure, file_of_trace.get(_trace_of(failure.where), first_file)) for failure in failures]
    still_waiting = {span["traceId"] for span in waiting}
    assembly.completed = {trace_id for trace_id in file_of_trace if trace_id not in still_waiting}
    new_ids = {(span["traceId"], span["spanId"]) for span in (span for span, _ in spans)}
    assembly.waiting = [(span, file_of_trace[span["traceId"]]) for span in waiting if (span["traceId"], span["spanId"]) in new_ids]
    return assembly


def keep_waiting(database: Database, assembly: Assembly) -> None:
    """After the batch's runs are stored: keep the spans still waiting, forget the completed traces'."""
    stage_spans(database, assembly.waiting)
    drop_staged_traces(database, assembly.completed)


def quiet_assembly(database: Database, quiet_seconds: float, now: datetime | None = None) -> Assembly:
    """Runs of waiting traces that have had no new span for `quiet_seconds`: their writer is done."""
    before = (now or datetime.now(UTC)) - timedelta(seconds=quiet_seconds)
    assembly = Assembly()
    trace_ids = quiet_traces(database, before)
    if not trace_ids:
        return assembly
    runs, failures, _, _ = assemble_runs(staged_spans(database, trace_ids), flush=True)
    assembly.runs = [(run, f"trace {_trace_of(run.where)}") for run in runs]
    assembly.failures = [(failure, f"trace {_trace_of(failure.where)}") for failure in failures]
    assembly.completed = set(trace_ids)
    return assembly


def _trace_of(where: str) -> str:
    """The trace id of a run's `where` ("trace <id> span <id>")."""
    words = where.split()
    return words[1] if len(words) > 1 and words[0] == "trace" else ""
