"""Log files made by the real libraries, offline: the formats teams keep, written the way they write them.

A real pydantic-ai Agent with an OpenAI chat model (`gpt-4o-mini`) runs against canned Chat Completions
responses served by `httpx2.MockTransport` (pydantic-ai's OpenAI provider takes an `httpx2.AsyncClient`;
the legacy `httpx` client is deprecated there). Each run makes exactly three requests (a tool call,
another tool call, the final answer) and uses 4,500 input tokens of which 2,048 are cache reads
(OpenAI's `prompt_tokens_details.cached_tokens`), 150 output tokens and two tool calls. The run is
instrumented with pydantic-ai's own OpenTelemetry instrumentation into an in-memory exporter, so one
run gives every format: its message history (`ModelMessagesTypeAdapter`), a course-style run object,
and its trace as OTLP JSON (encoded by `opentelemetry-exporter-otlp-proto-common`, written in the
OTLP/JSON encoding: lowerCamelCase fields, hex ids, enums as integers).

Runs are cached per variant: one run takes milliseconds, and a test session builds each once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import httpx2
import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import LogRecord

MODEL_NAME = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"  # what OpenAI answers for the alias
PROVIDER = "openai"
AGENT_NAME = "course_faq"
SERVICE_NAME = "course-faq-agent"
INSTRUCTIONS = (
    "You answer questions about the course. Use the search tool to find the relevant page, read it with "
    "read_page, then answer briefly and cite the page URL."
)
TOOL_NAMES = ("search", "read_page")
# (prompt_tokens, cached_tokens, completion_tokens) of the three responses of every run.
RESPONSE_USAGE = ((1200, 0, 40), (1500, 1024, 50), (1800, 1024, 60))
RUN_REQUESTS = len(RESPONSE_USAGE)
RUN_INPUT_TOKENS = sum(usage[0] for usage in RESPONSE_USAGE)  # 4,500, cache reads included
RUN_CACHE_READ_TOKENS = sum(usage[1] for usage in RESPONSE_USAGE)  # 2,048
RUN_OUTPUT_TOKENS = sum(usage[2] for usage in RESPONSE_USAGE)  # 150
RUN_TOOL_CALLS = 2

QUESTIONS = (
    ("Can I still join the course after the start date?", "late enrollment"),
    ("How do I run Docker on Windows?", "docker on windows"),
    ("Where do I submit the homework?", "homework submission"),
    ("How do I monitor data drift in production?", "data drift"),
    ("What is a dbt model?", "dbt models"),
)


@dataclass(frozen=True)
class AgentRun:
    """One finished agent run and what pydantic-ai and OpenTelemetry recorded of it."""

    variant: int
    prompt: str
    answer: str
    output: str | dict[str, Any]  # the run's output as JSON: the text, or the structured answer
    messages_json: bytes  # result.all_messages_json(): the ModelMessagesTypeAdapter dump
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    requests: int
    tool_calls: int
    spans: tuple[ReadableSpan, ...]  # in the order they finished: children first, the agent span last


def _completion(variant: int, step: int, message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    prompt_tokens, cached_tokens, completion_tokens = RESPONSE_USAGE[step]
    return {
        "id": f"chatcmpl-run{variant:03d}-{step}",
        "object": "chat.completion",
        "created": 1_767_600_000 + variant * 60 + step,
        "model": RESPONSE_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }


def _tool_call_message(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _canned_responses(variant: int, topic: str, answer: str, structured: bool) -> list[dict[str, Any]]:
    page = f"https://example.org/course/faq-{variant}"
    if structured:  # the answer comes as a call of pydantic-ai's output tool
        final = _tool_call_message(f"call_f{variant}", "final_result", {"answer": answer, "references": [page]})
        last = _completion(variant, 2, final, "tool_calls")
    else:
        last = _completion(variant, 2, {"role": "assistant", "content": answer}, "stop")
    return [
        _completion(variant, 0, _tool_call_message(f"call_s{variant}", "search", {"query": topic}), "tool_calls"),
        _completion(variant, 1, _tool_call_message(f"call_r{variant}", "read_page", {"url": page}), "tool_calls"),
        last,
    ]


class StructuredAnswer(BaseModel):
    """A structured output, as agents that must cite their sources declare one."""

    answer: str
    references: list[str]


@cache
def agent_run(variant: int, *, structured: bool = False) -> AgentRun:
    """Run the agent once for `variant` (its prompt, tool arguments and answer differ per variant);
    `structured`: the agent's output type is StructuredAnswer, returned through pydantic-ai's output tool."""
    question, topic = QUESTIONS[variant % len(QUESTIONS)]
    prompt = f"{question} (ticket {variant})"
    answer = (
        f"Here is what the course page says about {topic}: the answer to ticket {variant} is on the FAQ page, "
        f"with the steps to follow. References: https://example.org/course/faq-{variant}"
    )
    responses = iter(_canned_responses(variant, topic, answer, structured))

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=next(responses))

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(respond))
    model = OpenAIChatModel(MODEL_NAME, provider=OpenAIProvider(api_key="offline", http_client=client))
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = InstrumentationSettings(tracer_provider=tracer_provider, include_content=True)
    agent = Agent(
        model,
        name=AGENT_NAME,
        instructions=INSTRUCTIONS,
        output_type=StructuredAnswer if structured else str,
        capabilities=[Instrumentation(settings)],
    )

    @agent.tool_plain
    def search(query: str) -> str:
        """Search the course FAQ."""
        return f"Best match for {query!r}: https://example.org/course/faq-{variant}"

    @agent.tool_plain
    def read_page(url: str) -> str:
        """Read one FAQ page."""
        return f"{url}: the course FAQ entry about {topic}."

    result = agent.run_sync(prompt)
    usage = result.usage
    return AgentRun(
        variant=variant,
        prompt=prompt,
        answer=result.output.answer if structured else result.output,
        output=result.output.model_dump() if structured else result.output,
        messages_json=result.all_messages_json(),
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        output_tokens=usage.output_tokens,
        requests=usage.requests,
        tool_calls=usage.tool_calls,
        spans=tuple(exporter.get_finished_spans()),
    )


# Writers: one run -> the bytes or JSON value of each format -------------------------------------


def raw_history_bytes(run: AgentRun) -> bytes:
    """pydantic-ai's own message history (`result.all_messages_json()`): a JSON array of messages."""
    return run.messages_json


def course_log(run: AgentRun) -> dict[str, Any]:
    """The run as the course's logger writes it: the history plus agent name, prompt, model, tools, usage, output."""
    return {
        "agent_name": AGENT_NAME,
        "system_prompt": [INSTRUCTIONS],
        "provider": PROVIDER,
        "model": MODEL_NAME,
        "tools": list(TOOL_NAMES),
        "messages": json.loads(run.messages_json),
        "usage": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cache_read_tokens": run.cache_read_tokens,
            "cache_write_tokens": 0,
            "requests": run.requests,
            "tool_calls": run.tool_calls,
        },
        "output": run.output,
    }


def otlp_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An ExportTraceServiceRequest in the OTLP/JSON encoding, as the Collector's file exporter writes it."""
    document = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    # Protobuf's JSON printer writes bytes in base64; OTLP/JSON writes trace and span ids in hex.
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return document


def _ids_to_hex(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if item.get(key):
            item[key] = base64.b64decode(item[key]).hex()


def run_request(run: AgentRun) -> dict[str, Any]:
    """The whole trace of one run in one request."""
    return otlp_request(run.spans)


def split_requests(run: AgentRun, parts: int = 3) -> list[dict[str, Any]]:
    """The trace of one run spread over `parts` requests, in export order (the agent span, the root, last)."""
    size = -(-len(run.spans) // parts)
    return [otlp_request(run.spans[start : start + size]) for start in range(0, len(run.spans), size)]


def json_lines(values: Iterable[Any]) -> bytes:
    """One compact JSON value a line, each line ending with a newline, as an appending writer leaves it."""
    return b"".join(orjson.dumps(value) + b"\n" for value in values)


# The acceptance folder of issue 13 ---------------------------------------------------------------


@dataclass(frozen=True)
class AcceptanceTotals:
    """What the acceptance folder must ingest as: every run alike, so totals are runs x one run."""

    files: dict[str, int]  # file name -> runs it holds
    runs: int
    requests: int
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    tool_calls: int
    run_cost: Decimal  # one run's total cost at gpt-4o-mini's price (core/pricing.py)

    @property
    def total_cost(self) -> Decimal:
        return self.run_cost * self.runs


def expected_run_cost(when: datetime | None = None) -> Decimal:
    """The cost core/pricing.py gives one of these runs."""
    record = LogRecord(
        agent_name=AGENT_NAME,
        provider=PROVIDER,
        model=MODEL_NAME,
        user_prompt=None,
        instructions=None,
        assistant_answer=None,
        input_tokens=RUN_INPUT_TOKENS,
        output_tokens=RUN_OUTPUT_TOKENS,
        cache_read_tokens=RUN_CACHE_READ_TOKENS,
        cache_write_tokens=0,
        requests=RUN_REQUESTS,
        tool_calls=(),
        finish_reasons=(),
        run_started_at=when or datetime.now(UTC),
        run_finished_at=None,
    )
    price = price_run(record)
    assert price.total_cost is not None, price.status
    return price.total_cost


def write_acceptance_folder(folder: str | Path) -> AcceptanceTotals:
    """Write the "Done when" folder: two raw histories, a JSONL file of three run objects, a JSON array
    of two run objects and a JSONL file of three traced runs (one request a line): ten distinct runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = [agent_run(variant) for variant in range(10)]
    files = {
        "history_a.json": (raw_history_bytes(runs[0]), 1),
        "history_b.json": (raw_history_bytes(runs[1]), 1),
        "course_runs.jsonl": (json_lines(course_log(run) for run in runs[2:5]), 3),
        "course_runs_array.json": (json.dumps([course_log(run) for run in runs[5:7]], indent=2).encode(), 2),
        "traces.jsonl": (json_lines(run_request(run) for run in runs[7:10]), 3),
    }
    for name, (content, _) in files.items():
        (folder / name).write_bytes(content)
    count = sum(runs_in_file for _, runs_in_file in files.values())
    return AcceptanceTotals(
        files={name: runs_in_file for name, (_, runs_in_file) in files.items()},
        runs=count,
        requests=count * RUN_REQUESTS,
        input_tokens=count * RUN_INPUT_TOKENS,
        cache_read_tokens=count * RUN_CACHE_READ_TOKENS,
        output_tokens=count * RUN_OUTPUT_TOKENS,
        tool_calls=count * RUN_TOOL_CALLS,
        run_cost=expected_run_cost(),
    )
