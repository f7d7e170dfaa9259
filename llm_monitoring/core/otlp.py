"""PLACEHOLDER until the OTLP module lands."""


def is_otlp_request(document):
    return isinstance(document, dict) and isinstance(document.get("resourceSpans"), list)


def spans_of_request(document):
    return []


def assemble_runs(spans, *, flush, fallback_time=None):
    return [], [], list(spans)
