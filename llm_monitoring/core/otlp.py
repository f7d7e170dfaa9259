"""OTLP JSON traces -> spans -> runs.

Placeholder holding the interface core/formats.py relies on (detecting a request and flattening its
spans); the trace-to-run assembly is written separately and replaces this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from llm_monitoring.core.records import ParsedRun, RunFailure


def is_otlp_request(document: object) -> bool:
    """An ExportTraceServiceRequest in the OTLP JSON encoding: a dict with a "resourceSpans" list."""
    return isinstance(document, dict) and isinstance(document.get("resourceSpans"), list)


def spans_of_request(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's spans, each a self-contained dict (resourceSpans/scopeSpans/spans flattened)."""
    spans: list[dict[str, Any]] = []
    for resource_spans in document.get("resourceSpans") or []:
        if not isinstance(resource_spans, dict):
            continue
        for scope_spans in resource_spans.get("scopeSpans") or []:
            if not isinstance(scope_spans, dict):
                continue
            spans.extend(span for span in scope_spans.get("spans") or [] if isinstance(span, dict))
    return spans


def assemble_runs(
    spans: Sequence[dict[str, Any]], *, flush: bool, fallback_time: datetime | None = None
) -> tuple[list[ParsedRun], list[RunFailure], list[dict[str, Any]]]:
    """Runs of the complete traces among `spans`, failures, and the spans still waiting (placeholder:
    assembles nothing, every span waits)."""
    return [], [], list(spans)
