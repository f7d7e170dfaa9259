"""OTLP JSON traces -> runs: traces made by real pydantic-ai + the OpenTelemetry SDK (real_writers.py),
and hand-written traces in the OpenLLMetry, OpenInference and deprecated GenAI conventions."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from llm_monitoring.core import otlp
from llm_monitoring.core.genai_record import normalize_provider
from llm_monitoring.core.parsing import parse_run_document
from llm_monitoring.core.pricing import INVALID_USAGE, price_run
from llm_monitoring_tests.conftest import FIXTURES

OTLP_FIXTURES = FIXTURES / "otlp"


@pytest.fixture(scope="session")
def writers():
    # Imported here, not at the top: pydantic-ai takes seconds to import, paid only when these tests run.
    from llm_monitoring_tests import real_writers

    return real_writers


@pytest.fixture(scope="session")
def traced(writers):
    return writers.agent_run(0)


def assemble(requests: list[dict[str, Any]], *, flush: bool = False):
    spans = [span for request in requests for span in otlp.spans_of_request(request)]
    return otlp.assemble_runs(spans, flush=flush)


def only_run(requests: list[dict[str, Any]], *, flush: bool = False):
    runs, failures, waiting, ignored = assemble(requests, flush=flush)
    assert (len(runs), failures, waiting, ignored) == (1, [], [], [])
    return runs[0]


def spans_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for resource in request["resourceSpans"] for scope in resource["scopeSpans"] for span in scope["spans"]]


def agent_span(request: dict[str, Any]) -> dict[str, Any]:
    return next(span for span in spans_of(request) if not span.get("parentSpanId"))


def set_attribute(span: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    span["attributes"] = [entry for entry in span["attributes"] if entry["key"] != key] + [{"key": key, "value": value}]


def fixture_request(name: str) -> dict[str, Any]:
    return json.loads((OTLP_FIXTURES / name).read_text())


# Traces of real pydantic-ai runs ----------------------------------------------------------------


def test_traced_run_has_exact_tokens_cost_and_tools(writers, traced):
    request = writers.run_request(traced)
    run = only_run([request])
    record = run.record
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens, record.output_tokens) == (4500, 2048, 0, 150)
    assert record.requests == 3
    assert record.tool_names == ("search", "read_page")
    assert (record.provider, record.model, record.agent_name) == ("openai", "gpt-4o-mini-2024-07-18", "course_faq")
    assert (record.user_prompt, record.assistant_answer, record.instructions) == (traced.prompt, traced.answer, writers.INSTRUCTIONS)
    assert record.finish_reasons == ("tool_call", "tool_call", "stop")
    assert record.run_started_at < record.run_finished_at
    assert record.value_notes == ()
    price = price_run(record)
    assert price.status == "priced"
    assert price.total_cost == writers.expected_run_cost() == Decimal("0.0006114")
    agent = agent_span(request)
    assert run.key == otlp.run_key(agent["traceId"], agent["spanId"])
    assert (run.origin, run.where) == ("otlp", f"trace {agent['traceId']} span {agent['spanId']}")


def test_traced_run_matches_the_run_object_of_the_same_run(writers, traced):
    from_trace = only_run([writers.run_request(traced)]).record
    from_object = parse_run_document(writers.course_log(traced))
    for field in ("input_tokens", "cache_read_tokens", "output_tokens", "requests", "tool_names", "user_prompt", "assistant_answer"):
        assert getattr(from_trace, field) == getattr(from_object, field), field
    assert price_run(from_trace).total_cost == price_run(from_object).total_cost


def test_structured_output_is_the_answer_and_its_output_tool_no_tool_call(writers):
    run = writers.agent_run(4, structured=True)
    from_trace = only_run([writers.run_request(run)]).record
    from_object = parse_run_document(writers.course_log(run))
    assert from_trace.tool_names == from_object.tool_names == ("search", "read_page")
    assert from_trace.assistant_answer == from_object.assistant_answer
    assert from_trace.assistant_answer.startswith(run.answer)
    assert from_trace.answer_references == from_object.answer_references == ("https://example.org/course/faq-4",)
    assert (from_trace.input_tokens, from_trace.output_tokens, from_trace.requests) == (4500, 150, 3)


def test_run_text_reads_back_as_the_same_run(writers, traced):
    run = only_run([writers.run_request(traced)])
    stored = json.loads(run.text)
    assert otlp.is_otlp_request(stored)
    assert only_run([stored], flush=True) == run


def test_agent_span_totals_are_never_added_to_the_chat_spans(writers, traced):
    older = writers.run_request(traced)
    # pydantic-ai before 1.x wrote the run totals on the agent span as gen_ai.usage.*, like the chat spans.
    for entry in agent_span(older)["attributes"]:
        entry["key"] = entry["key"].replace("gen_ai.aggregated_usage.", "gen_ai.usage.")
    record = only_run([older]).record
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens, record.requests) == (4500, 2048, 150, 3)

    # Chat spans without usage: the agent span's totals are the run's usage.
    for span in spans_of(older):
        if span.get("parentSpanId"):
            span["attributes"] = [entry for entry in span["attributes"] if "usage" not in entry["key"]]
    record = only_run([older]).record
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens, record.requests) == (4500, 2048, 150, 3)


def test_trace_split_over_lines_waits_for_its_root_then_is_one_run(writers, traced):
    lines = writers.json_lines(writers.split_requests(traced, 3)).splitlines()
    assert len(lines) == 3
    requests = [orjson.loads(line) for line in lines]
    early = [span for request in requests[:2] for span in otlp.spans_of_request(request)]
    runs, failures, waiting, ignored = otlp.assemble_runs(early, flush=False)
    assert (runs, failures, ignored) == ([], [], [])
    assert waiting == early

    whole = only_run([writers.run_request(traced)])
    assert only_run(requests) == whole
    # the staged spans of earlier lines, with the last line's, give the same run
    later = otlp.spans_of_request(requests[2])
    runs, _, _, _ = otlp.assemble_runs(waiting + later, flush=False)
    assert runs == [whole]


def test_trace_without_its_root_waits_and_flush_completes_it(writers, traced):
    request = writers.run_request(traced)
    agent = agent_span(request)
    for scope in request["resourceSpans"][0]["scopeSpans"]:
        scope["spans"] = [span for span in scope["spans"] if span is not agent]
    runs, failures, waiting, _ = assemble([request], flush=False)
    assert (runs, failures, len(waiting)) == ([], [], 5)

    run = only_run([request], flush=True)
    # the missing agent span's id anchors the run: the key the complete trace gives
    assert run.key == otlp.run_key(agent["traceId"], agent["spanId"])
    record = run.record
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens, record.requests) == (4500, 2048, 150, 3)
    assert record.tool_names == ("search", "read_page")
    assert (record.user_prompt, record.assistant_answer, record.instructions) == (traced.prompt, traced.answer, writers.INSTRUCTIONS)
    assert record.agent_name == "course_faq"


def test_run_identity_and_text_do_not_depend_on_span_order_or_repeats(writers, traced):
    whole = only_run([writers.run_request(traced)])
    spans = otlp.spans_of_request(writers.run_request(traced))
    again = otlp.spans_of_request(writers.run_request(traced))
    runs, failures, waiting, ignored = otlp.assemble_runs(list(reversed(spans)) + again[::2], flush=False)
    assert (runs, failures, waiting, ignored) == ([whole], [], [], [])


def test_base64_ids_of_protobufs_own_json_printer_are_read_as_hex(writers, traced):
    base64_request = MessageToDict(encode_spans(traced.spans), use_integers_for_enums=True)
    assert only_run([base64_request]).key == only_run([writers.run_request(traced)]).key


def test_nested_agent_run_is_a_run_of_its_own_without_double_counting(writers, traced):
    outer = writers.run_request(traced)
    inner = writers.run_request(writers.agent_run(1))
    tool_span = next(span for span in spans_of(outer) if span["name"] == "execute_tool read_page")
    for span in spans_of(inner):
        span["traceId"] = tool_span["traceId"]
    agent_span(inner)["parentSpanId"] = tool_span["spanId"]
    runs, failures, waiting, _ = assemble([inner, outer])
    assert (len(runs), failures, waiting) == (2, [], [])
    for run in runs:
        assert (run.record.input_tokens, run.record.output_tokens, run.record.requests) == (4500, 150, 3)
        assert only_run([json.loads(run.text)], flush=True) == run
    assert {run.record.user_prompt for run in runs} == {traced.prompt, writers.agent_run(1).prompt}


def test_agent_span_with_nothing_under_it_is_a_failure(writers, traced):
    request = writers.run_request(traced)
    agent = agent_span(request)
    agent["attributes"] = [entry for entry in agent["attributes"] if entry["key"] == "gen_ai.operation.name"]
    request["resourceSpans"][0]["scopeSpans"][0]["spans"] = [agent]
    runs, failures, waiting, _ = assemble([request])
    assert (runs, waiting, len(failures)) == ([], [], 1)
    assert failures[0].key == otlp.run_key(agent["traceId"], agent["spanId"])
    assert "has no model request, usage or message" in failures[0].reason


# Hand-written traces in other conventions --------------------------------------------------------


@pytest.mark.parametrize("name", ["openllmetry.json", "openinference.json"])
def test_vendor_conventions_give_the_same_run(name):
    run = only_run([fixture_request(name)])
    record = run.record
    # input includes the cached tokens; the OpenInference agent span's own totals are not added
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens, record.output_tokens) == (2700, 1024, 0, 90)
    assert record.requests == 2
    assert record.tool_names == ("search",)
    assert record.tool_calls[0].args in ('{"args": [], "kwargs": {"query": "join late"}}', '{"query": "join late"}')
    assert (record.provider, record.model, record.agent_name) == ("openai", "gpt-4o-mini-2024-07-18", "faq_agent")
    assert record.user_prompt == "How do I join the course late?"
    assert record.instructions == "You answer course questions. Search first."
    assert record.assistant_answer.startswith("Yes: you can join late")
    assert str(record.run_started_at) == ("2026-01-05 08:00:00.100000+00:00" if name == "openllmetry.json" else "2026-01-05 08:00:00+00:00")
    assert price_run(record).status == "priced"


def test_openinference_agent_output_is_the_answer():
    record = only_run([fixture_request("openinference.json")]).record
    assert record.assistant_answer == "Yes: you can join late (faq/joining.md)."


def test_openllmetry_workflow_root_is_not_a_run_of_its_own():
    request = fixture_request("openllmetry.json")
    run = only_run([request])
    assert run.key == otlp.run_key("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b175")
    assert '"spanId":"eee19b7ec3c1b174"' not in run.text  # the workflow span is outside the agent run


def test_deprecated_attributes_and_message_events_are_read():
    run = only_run([fixture_request("deprecated_events.json")])
    record = run.record
    assert run.key == otlp.run_key("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")  # the root: no agent span
    assert (record.provider, record.model, record.input_tokens, record.output_tokens, record.requests) == (
        "openai",
        "gpt-4o-mini",
        300,
        20,
        1,
    )
    assert (record.instructions, record.user_prompt) == ("Answer in one sentence.", "Where do capybaras live?")
    assert record.assistant_answer == "In South America, near rivers and lakes."
    assert record.finish_reasons == ("stop",)


def test_pydantic_ai_0x_trace_counts_the_chat_spans_once():
    request = fixture_request("pydantic_ai_0x_events.json")
    record = only_run([request]).record
    assert (record.input_tokens, record.output_tokens, record.requests) == (900, 70, 2)
    assert record.tool_names == ("lookup_order",)
    assert record.tool_calls[0].args == '{"order_id": 4521}'
    assert (record.agent_name, record.model, record.provider) == ("support_bot", "gpt-4o-2024-08-06", "openai")
    assert record.user_prompt == "Where is my order #4521?"
    assert record.instructions == "You are a support assistant. Be brief."
    assert record.assistant_answer == "Your order ships today and arrives tomorrow."

    # without the agent span's messages, the chat spans' `events` attribute tells the same
    set_attribute(agent_span(request), "all_messages_events", {"stringValue": "[]"})
    set_attribute(agent_span(request), "final_result", {"stringValue": ""})
    record = only_run([request]).record
    assert (record.user_prompt, record.assistant_answer) == ("Where is my order #4521?", "Your order ships today and arrives tomorrow.")


def test_trace_without_genai_spans_is_ignored():
    request = fixture_request("deprecated_events.json")
    span = spans_of(request)[0]
    span["name"], span["attributes"], span["events"] = "GET /health", [{"key": "http.route", "value": {"stringValue": "/health"}}], []
    assert assemble([request]) == ([], [], [], ["4bf92f3577b34da6a3ce929d0e0e4736"])


@pytest.mark.parametrize(
    ("logged", "stored"),
    [("gcp.gemini", "google-gla"), ("gcp.vertex_ai", "google-vertex"), ("aws.bedrock", "bedrock"), ("OpenAI", "openai"), ("x_ai", "xai")],
)
def test_provider_names_of_the_conventions_are_the_names_pricing_knows(logged, stored):
    assert normalize_provider(logged) == stored


# Hostile traces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"intValue": "-5"}, "is negative"),
        ({"intValue": "1" * 25}, "the largest count stored"),
        ({"stringValue": "lots"}, "is not a number"),
        ({"doubleValue": "NaN"}, "is not a finite number"),
        ({"doubleValue": 12.5}, "is not a whole number"),
    ],
)
def test_impossible_token_count_is_a_note_not_a_crash(writers, traced, value, why):
    request = writers.run_request(traced)
    chat = next(span for span in spans_of(request) if span["name"].startswith("chat"))
    set_attribute(chat, "gen_ai.usage.input_tokens", value)
    record = only_run([request]).record
    assert record.input_tokens is None
    assert record.output_tokens == 150
    assert any(note.startswith("input_tokens:") and why in note and "gen_ai.usage.input_tokens" in note for note in record.value_notes)
    assert price_run(record).status.startswith(INVALID_USAGE)


@pytest.mark.parametrize("start", ["-1", "9" * 25, "soon", {"nested": 1}, "0"])
def test_impossible_span_times_fall_back_to_the_other_spans(writers, traced, start):
    request = writers.run_request(traced)
    agent = agent_span(request)
    agent["startTimeUnixNano"] = start
    record = only_run([request]).record
    first_chat = min(int(span["startTimeUnixNano"]) for span in spans_of(request) if span.get("parentSpanId"))
    assert record.run_started_at.timestamp() == pytest.approx(first_chat / 1e9, abs=1e-5)
    assert record.input_tokens == 4500


def test_span_ending_before_it_starts_keeps_its_start_only(writers, traced):
    request = writers.run_request(traced)
    agent = agent_span(request)
    agent["endTimeUnixNano"] = str(int(agent["startTimeUnixNano"]) - 1)
    record = only_run([request]).record
    assert record.run_started_at is not None and record.run_finished_at is None
    assert any(note.startswith("run_finished_at:") for note in record.value_notes)


def test_unreadable_spans_are_failures_and_the_rest_still_assembles(writers, traced):
    request = writers.run_request(traced)
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    tool = next(span for span in spans if span["name"] == "execute_tool read_page")
    tool["spanId"] = "abc"  # wrong length
    spans.append("not a span")
    request["resourceSpans"].append(["not", "an", "object"])
    runs, failures, waiting, _ = assemble([request])
    assert (len(runs), waiting) == (1, [])
    assert runs[0].record.tool_names == ("search",)
    assert runs[0].record.input_tokens == 4500
    reasons = sorted(failure.reason for failure in failures)
    assert len(reasons) == 3
    assert any("its spanId 'abc' is not an id of 8 bytes in hex" in reason for reason in reasons)
    assert all(len(failure.key) == 64 for failure in failures)


def test_hostile_shapes_never_crash(writers, traced):
    request = writers.run_request(traced)
    spans = spans_of(request)
    spans[0]["attributes"] = "not a list"
    spans[1]["attributes"].append({"no": "key"})
    spans[1]["events"] = [{"name": 5}, "x", {"name": "gen_ai.choice", "attributes": {"message": "{broken"}}]
    deep: dict[str, Any] = {"stringValue": "bottom"}
    for _ in range(400):
        deep = {"kvlistValue": {"values": [{"key": "k", "value": deep}]}}
    spans[2]["attributes"].append({"key": "deep", "value": deep})
    spans[3]["parentSpanId"] = spans[3]["spanId"]  # its own parent
    runs, failures, _, _ = assemble([request], flush=True)
    assert len(runs) + len(failures) >= 1
    for run in runs:
        assert only_run([json.loads(run.text)], flush=True) == run


def test_is_otlp_request():
    assert otlp.is_otlp_request({"resourceSpans": []})
    assert not otlp.is_otlp_request({"resourceSpans": {}})
    assert not otlp.is_otlp_request([{"resourceSpans": []}])
    assert not otlp.is_otlp_request({"messages": []})


# The acceptance folder ------------------------------------------------------------------------


def test_acceptance_folder_holds_ten_runs_in_five_files(writers, tmp_path):
    totals = writers.write_acceptance_folder(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(totals.files)
    assert (totals.runs, totals.requests, totals.input_tokens, totals.cache_read_tokens, totals.output_tokens, totals.tool_calls) == (
        10,
        30,
        45_000,
        20_480,
        1_500,
        20,
    )
    assert totals.total_cost == Decimal("0.006114")

    for name in ("history_a.json", "history_b.json"):
        history = json.loads((tmp_path / name).read_bytes())
        assert [message["kind"] for message in history] == ["request", "response"] * 3
    course_lines = (tmp_path / "course_runs.jsonl").read_bytes().splitlines()
    array = json.loads((tmp_path / "course_runs_array.json").read_bytes())
    course_runs = [parse_run_document(json.loads(line)) for line in course_lines] + [parse_run_document(value) for value in array]
    trace_lines = (tmp_path / "traces.jsonl").read_bytes().splitlines()
    assert (len(course_lines), len(array), len(trace_lines)) == (3, 2, 3)
    trace_runs = [only_run([orjson.loads(line)]).record for line in trace_lines]
    records = course_runs + trace_runs
    assert len({record.user_prompt for record in records}) == 8  # distinct content in every run
    for record in records:
        assert (record.input_tokens, record.cache_read_tokens, record.output_tokens, record.requests, len(record.tool_calls)) == (
            4500,
            2048,
            150,
            3,
            2,
        )
        assert price_run(record).total_cost == totals.run_cost
    # a second write gives the same runs (the cached agent runs), so a re-ingest adds nothing
    again = copy.deepcopy(totals)
    assert writers.write_acceptance_folder(tmp_path / "again") == again
    assert (tmp_path / "again" / "traces.jsonl").read_bytes() == (tmp_path / "traces.jsonl").read_bytes()
