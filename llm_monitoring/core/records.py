"""Plain records that flow through the pipeline: parse -> price -> evaluate -> store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class ToolCall:
    tool_name: str
    args: str
    tool_call_id: str | None = None


@dataclass(frozen=True)
class LogRecord:
    """What one agent run log says, independent of where it came from or where it goes."""

    agent_name: str | None
    provider: str | None
    model: str | None
    user_prompt: str | None
    instructions: str | None
    assistant_answer: str | None
    # NULL (None) when nothing in the log reports usage: 0 would claim a free run.
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    requests: int | None
    tool_calls: tuple[ToolCall, ...]
    finish_reasons: tuple[str, ...]
    run_started_at: datetime | None
    run_finished_at: datetime | None
    # Cost the provider itself reported in usage details (OpenRouter does), kept for comparison.
    provider_reported_cost: Decimal | None = None
    # References of a structured output, kept apart so checks can see them.
    answer_references: tuple[str, ...] = ()
    # Values of the log that could not be kept as logged (see core/limits.py), each "field: why".
    value_notes: tuple[str, ...] = ()

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(call.tool_name for call in self.tool_calls)

    @property
    def duration_seconds(self) -> float | None:
        if self.run_started_at is None or self.run_finished_at is None:
            return None
        return (self.run_finished_at - self.run_started_at).total_seconds()


@dataclass(frozen=True)
class ParsedRun:
    """One run read from a log file, with the identity it is stored under."""

    key: str  # the run's identity, 64 hex chars; becomes llm_logs.content_hash
    text: str  # JSON text stored as raw_json; formats.parse_stored_run(text) gives this same record
    record: LogRecord
    origin: str  # "file" (per-run object), "history" (raw pydantic-ai history), "otlp" (from a trace)
    where: str  # "" for a run that is the whole file; else "line 3", "element 2", "trace <hex> span <hex>"


@dataclass(frozen=True)
class RunFailure:
    """A part of a log file that should have been a run and is not, with a reason a person can act on."""

    key: str  # sha256 hex of the failing element's bytes (its identity in ingest_errors)
    where: str  # "line 3", "element 2", ...
    reason: str  # one line a person can act on


@dataclass(frozen=True)
class PriceResult:
    """Cost of one run. Costs are None whenever the price is not known: never a made-up $0."""

    input_cost: Decimal | None
    output_cost: Decimal | None
    total_cost: Decimal | None
    status: str
    price_data_version: str

    @property
    def priced(self) -> bool:
        return self.total_cost is not None


@dataclass(frozen=True)
class CheckResult:
    check_name: str
    # None means "not applicable", which is neither a pass nor a failure.
    passed: bool | None
    score: float | None
    details: str


@dataclass(frozen=True)
class ParseError(Exception):
    """A file that is not a run log, with a reason a person can act on."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Feedback:
    log_id: int
    is_good: bool
    comments: str | None = None
    reference_answer: str | None = None
    reviewer: str | None = None
