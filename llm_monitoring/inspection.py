"""`llm-monitoring inspect FILE...`: what the ingest would make of log files, without writing anything.

The same detection, parsing, pricing and checks as the ingest (log_reading.py); spans of traces are
assembled from the files given, as if their writer were done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from llm_monitoring.core.evaluation import evaluate_run
from llm_monitoring.core.formats import read_log
from llm_monitoring.core.otlp import assemble_runs
from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import ParsedRun, ParseError, RunFailure
from llm_monitoring.core.wording import plural
from llm_monitoring.file_names import name_text
from llm_monitoring.log_reading import describe_failure, fallback_time

MAX_RUNS_SHOWN = 20


@dataclass
class Inspection:
    path: str
    format: str = ""
    detection: str = ""
    error: str = ""  # why the ingest would quarantine the whole file
    runs: list[ParsedRun] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)
    spans: int = 0
    appendable: bool = False


def inspect_paths(paths: list[str]) -> list[Inspection]:
    """Read each file like the ingest; the spans of all of them are assembled together at the end."""
    inspections: list[Inspection] = []
    spans: list[dict] = []
    owner: dict[str, Inspection] = {}
    for path in paths:
        inspection = Inspection(name_text(path))
        inspections.append(inspection)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
            file_read = read_log(raw, name=os.path.basename(path), final=True, fallback_time=fallback_time(os.stat(path).st_mtime))
        except ParseError as error:
            inspection.error = error.reason
            continue
        except OSError as error:
            inspection.error = describe_failure("reading", error)
            continue
        inspection.format, inspection.detection = file_read.format, file_read.detection
        inspection.runs, inspection.failures = list(file_read.runs), list(file_read.failures)
        inspection.spans, inspection.appendable = len(file_read.spans), file_read.appendable
        spans += file_read.spans
        owner.update((span["traceId"], inspection) for span in file_read.spans)
    if spans:
        runs, failures, _, _ = assemble_runs(spans, flush=True)
        for run in runs:
            owner[run.where.split()[1]].runs.append(run)
        for failure in failures:
            words = failure.where.split()
            target = owner.get(words[1]) if len(words) > 1 and words[0] == "trace" else None
            (target or inspections[0]).failures.append(failure)
    return inspections


def report_lines(inspection: Inspection) -> Iterator[str]:
    yield inspection.path
    if inspection.error:
        yield f"  would be quarantined: {inspection.error}"
        return
    handling = "read in place, by byte offset (appended to)" if inspection.appendable else "moved once stored"
    yield f"  format: {inspection.format} ({inspection.detection}); {handling}"
    spans = f", from {plural(inspection.spans, 'span')}" if inspection.spans else ""
    yield f"  {plural(len(inspection.runs), 'run')}{spans}, {plural(len(inspection.failures), 'run')} failing"
    for run in inspection.runs[:MAX_RUNS_SHOWN]:
        yield "  " + run_line(run)
    if len(inspection.runs) > MAX_RUNS_SHOWN:
        yield f"  ... and {plural(len(inspection.runs) - MAX_RUNS_SHOWN, 'more run')}"
    for failure in inspection.failures:
        yield f"  not stored, {failure.where or 'the run'}: {failure.reason}"


def run_line(run: ParsedRun) -> str:
    record = run.record
    price = price_run(record)
    failed = [check.check_name for check in evaluate_run(record) if check.passed is False]
    cost = f"${price.total_cost:.6f}" if price.total_cost is not None else f"unpriced ({price.status})"
    tokens = f"in {_count(record.input_tokens)} (cache read {_count(record.cache_read_tokens)}), out {_count(record.output_tokens)}"
    where = f"{run.where}: " if run.where else ""
    return (
        f"- {where}{record.provider or '?'}/{record.model or '?'}, {plural(record.requests or 0, 'request')}, tokens {tokens}, "
        f"{cost}, {plural(len(record.tool_calls), 'tool call')}, origin {run.origin}"
        + (f", failing checks: {', '.join(failed)}" if failed else "")
    )


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"
