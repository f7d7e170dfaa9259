"""Log formats: detection, one run per element or line with its identity, and the real-world variants
of the per-run object (pure: no database)."""

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from llm_monitoring.core import formats
from llm_monitoring.core.formats import parse_stored_run, read_json_lines, read_log
from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring.core.pricing import price_run
from llm_monitoring.core.records import ParseError
from llm_monitoring.core.timeline import message_timeline
from llm_monitoring_tests.conftest import FIXTURES, REAL_LOGS, fixture_bytes

# Files of the other formats and of broken writers: apart from the run logs every ingest test copies.
FORMAT_FIXTURES = FIXTURES / "formats"


def format_fixture(name: str) -> bytes:
    return (FORMAT_FIXTURES / name).read_bytes()


WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def only_run(raw: bytes, name: str = "run.json"):
    read = read_log(raw, name=name, final=True)
    assert len(read.runs) == 1 and not read.failures
    return read.runs[0]


def run_log(prompt: str = "hi", **fields) -> dict:
    return {
        "messages": [
            {"parts": [{"content": prompt, "timestamp": "2025-05-01T10:00:00Z", "part_kind": "user-prompt"}], "kind": "request"},
            {
                "parts": [{"content": "hello", "part_kind": "text"}],
                "usage": {"input_tokens": 10, "output_tokens": 2},
                "model_name": "gpt-4o-mini",
                "provider_name": "openai",
                "timestamp": "2025-05-01T10:00:01Z",
                "kind": "response",
            },
        ],
        **fields,
    }


# ---------------------------------------------------------------- the per-run object's real-world variants


def test_course_log_whose_model_is_a_repr_is_priced_from_the_responses():
    record = only_run(format_fixture("groq_model_repr.json")).record
    assert (record.provider, record.model) == ("groq", "llama-3.1-8b-instant")
    price = price_run(record)
    # Groq's llama-3.1-8b-instant: $0.05 per million input tokens, $0.08 per million output tokens
    assert price.total_cost == Decimal(3000) * Decimal("0.05") / 10**6 + Decimal(100) * Decimal("0.08") / 10**6
    # the top-level system_prompt is the repr of a bound method: the system-prompt part wins
    assert record.instructions == "You answer questions about Hardhat with the search_docs tool."


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("GroqModel()", "llama-3.1-8b-instant"),
        ("<pydantic_ai.models.groq.GroqModel object at 0x7f3a2c1d9e50>", "llama-3.1-8b-instant"),
        ("", "llama-3.1-8b-instant"),
        ("groq:llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
    ],
)
def test_model_that_is_not_a_model_name_falls_back_to_the_responses(model: str, expected: str):
    document = json.loads(format_fixture("groq_model_repr.json"))
    record = only_run(json.dumps({**document, "model": model}).encode()).record
    assert (record.provider, record.model) == ("groq", expected)


def test_model_name_inside_an_old_model_repr_is_used_when_no_response_names_one():
    document = run_log(model="OpenAIModel(model_name='gpt-4o', provider=OpenAIProvider())")
    del document["messages"][1]["model_name"]
    assert only_run(json.dumps(document).encode()).record.model == "gpt-4o"


def test_model_name_at_top_level_and_a_system_prompt_list_written_with_str():
    record = only_run(format_fixture("model_name_top_level.json")).record
    assert (record.provider, record.model) == ("openai", "gpt-4o-mini")
    assert price_run(record).priced
    assert record.instructions == "You answer questions about Ethereum improvement proposals.\n\nAlways include references."


def test_system_prompt_with_markup_is_not_taken_for_a_repr():
    record = only_run(json.dumps(run_log(system_prompt="<role>You answer briefly.</role>")).encode()).record
    assert record.instructions == "<role>You answer briefly.</role>"


def test_messages_written_as_python_reprs_are_refused_with_the_fix():
    for reader in (lambda raw: read_log(raw, name="repr.json", final=True), parse_run_log):
        with pytest.raises(ParseError) as error:
            reader(format_fixture("repr_messages.json"))
        reason = error.value.reason
        assert "4 of 4 messages are strings" in reason and "ModelRequest(parts=" in reason
        assert "ModelMessagesTypeAdapter.dump_json(messages)" in reason and "all_messages_json()" in reason


def test_a_run_with_some_repr_messages_is_refused_rather_than_evaluated_on_the_others():
    # The tool call sits in the repr: evaluating the readable messages alone would fail tool_call_search.
    with pytest.raises(ParseError) as error:
        read_log(format_fixture("mixed_repr_messages.json"), name="mixed.json", final=True)
    assert "message 2 of 3 is a string" in error.value.reason
    assert "ModelMessagesTypeAdapter" in error.value.reason


def test_messages_of_other_types_are_refused_and_null_messages_skipped():
    with pytest.raises(ParseError, match="message 2 of 2 is a number"):
        parse_run_log(b'{"messages": [{"role": "user", "content": "hi"}, 3]}')
    record = parse_run_log(b'{"messages": [null, {"role": "user", "content": "hi"}]}', fallback_time=WHEN)
    assert record.user_prompt == "hi"


# ---------------------------------------------------------------- raw pydantic-ai message histories


def test_raw_message_history_is_one_run_keyed_by_the_file_bytes():
    raw = format_fixture("message_history.json")
    read = read_log(raw, name="history.json", final=True)
    assert read.format == formats.MESSAGE_HISTORY
    assert read.detection == "a JSON array whose elements are messages (kind request/response)"
    [run] = read.runs
    assert (run.key, run.text, run.origin, run.where) == (sha256(raw), raw.decode(), "history", "")
    record = run.record
    assert record.agent_name is None
    assert (record.provider, record.model) == ("openai", "gpt-4o-mini-2024-07-18")
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.requests) == (3000, 80, 2048, 2)
    assert record.tool_names == ("search_docs",)
    assert record.user_prompt == "How do I configure the retry policy?"
    assert record.instructions == "Search the docs before answering. Cite the pages you used."
    assert record.assistant_answer.startswith("Set `retry_policy=")
    assert record.run_started_at == datetime(2026, 2, 3, 8, 0, 0, 100000, tzinfo=UTC)
    assert record.run_finished_at == datetime(2026, 2, 3, 8, 0, 3, 250000, tzinfo=UTC)
    assert price_run(record).priced
    assert parse_stored_run(run.text) == record
    assert [entry.kind for entry in message_timeline(run.text)] == ["system", "user", "tool_call", "tool_return", "answer"]


def test_history_without_instructions_takes_the_system_prompt_parts():
    history = json.loads(format_fixture("message_history.json"))
    for message in history:
        message.pop("instructions", None)
    assert only_run(json.dumps(history).encode()).record.instructions == "You are a documentation assistant."


def test_history_of_repr_strings_is_refused_with_the_fix():
    raw = json.dumps(json.loads(format_fixture("repr_messages.json"))["messages"]).encode()
    with pytest.raises(ParseError) as error:
        read_log(raw, name="history.json", final=True)
    assert error.value.reason.startswith("pydantic-ai message history, a JSON array of strings that are Python reprs")
    assert "ModelMessagesTypeAdapter.dump_json(messages)" in error.value.reason


# ---------------------------------------------------------------- JSON arrays of runs


def test_array_of_runs_gives_one_run_per_element_keyed_by_its_canonical_json():
    raw = format_fixture("runs_array.json")
    read = read_log(raw, name="runs.json", final=True)
    assert read.format == formats.RUN_ARRAY
    assert read.detection == "a JSON array of runs, 2 elements: 1 run log, 1 message history"
    assert [(run.where, run.origin) for run in read.runs] == [("element 1", "file"), ("element 2", "history")]
    elements = json.loads(raw)
    for run, element in zip(read.runs, elements, strict=True):
        assert (run.key, run.text) == (sha256(canonical(element)), canonical(element))
        assert parse_stored_run(run.text) == run.record
    assert read.runs[0].record.tool_names == ("search",) and read.runs[1].record.assistant_answer == "Yes, for completed projects."
    # the same runs written with other spacing and key order are the same runs
    rewritten = json.dumps([dict(reversed(list(elements[0].items()))), elements[1]], indent=4).encode()
    assert [run.key for run in read_log(rewritten, name="runs.json", final=True).runs] == [run.key for run in read.runs]


def test_bad_elements_are_failures_that_do_not_block_the_others():
    elements = [run_log("first"), {"question": "q"}, 3, {"messages": "nope"}, run_log("last")]
    read = read_log(json.dumps(elements).encode(), name="runs.json", final=True, fallback_time=WHEN)
    assert [run.record.user_prompt for run in read.runs] == ["first", "last"]
    assert [(failure.where, failure.key) for failure in read.failures] == [
        (f"element {number}", sha256(canonical(elements[number - 1]))) for number in (2, 3, 4)
    ]
    reasons = [failure.reason for failure in read.failures]
    assert "no 'messages' list (top-level keys: question)" in reasons[0]
    assert reasons[1].startswith("a number, not a run")
    assert "'messages' is a string, not a list" in reasons[2]
    assert read.detection == "a JSON array of runs, 5 elements: 2 run logs, 3 unreadable"


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b"[1, 2]", "a JSON array whose first element is a number: not a run log"),
        (b"[]", "an empty JSON array"),
        (b'[{"role": "user", "content": "hi"}]', "a JSON array whose first element is an object with keys content, role"),
        (b'{"question": "q"}', "no 'messages' list (top-level keys: question)"),
        (b'"text"', "JSON is a string, not an object or an array"),
        (b'[{"kind": "request", "parts": []}, {"messages": []}]', "a JSON array mixing messages (element 1) and runs (element 2)"),
    ],
)
def test_unknown_shapes_say_what_was_found_and_which_formats_are_accepted(raw: bytes, found: str):
    with pytest.raises(ParseError) as error:
        read_log(raw, name="odd.json", final=True)
    assert found in error.value.reason
    if raw != b"[]":
        assert "accepted formats: a run log" in error.value.reason and "OTLP JSON traces" in error.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty file"),
        (b"  \n", "file holds only white space"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"agent_name": "x", "messages": [', "truncated JSON: the document ends early"),
        (b"{not json}", "invalid JSON at line 1"),
    ],
)
def test_whole_file_errors_keep_their_reasons(raw: bytes, reason: str):
    with pytest.raises(ParseError, match=reason):
        read_log(raw, name="bad.json", final=True)


def test_a_single_run_log_keeps_the_identity_of_its_bytes():
    raw = fixture_bytes("gemini_thinking.json")
    read = read_log(raw, name="run.json", final=False)
    assert (read.format, read.detection, read.consumed, read.appendable) == (
        formats.RUN_LOG,
        "a JSON object with a 'messages' list",
        len(raw),
        False,
    )
    [run] = read.runs
    assert (run.key, run.text, run.origin, run.where) == (sha256(raw), raw.decode(), "file", "")
    assert run.record == parse_run_log(raw)
    assert parse_stored_run(run.text) == run.record


# ---------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize("name", ["runs.jsonl", "RUNS.NDJSON"])
def test_json_lines_give_one_run_per_line_and_skip_blank_lines(name: str):
    raw = format_fixture("runs.jsonl")
    read = read_log(raw, name=name, final=False)
    assert read.format == formats.JSON_LINES and read.appendable
    assert read.detection == "JSON Lines: 3 lines (2 run logs, 1 message history)"
    assert [run.where for run in read.runs] == ["line 1", "line 2", "line 4"]
    assert [run.origin for run in read.runs] == ["file", "history", "file"]
    assert (read.consumed, read.lines) == (len(raw), 4)
    values = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert [run.key for run in read.runs] == [sha256(canonical(value)) for value in values]
    assert read.runs[2].record.agent_name == "faq_agent_v2"
    assert all(parse_stored_run(run.text) == run.record for run in read.runs)


def test_last_line_without_newline_waits_until_the_file_is_final():
    raw = format_fixture("runs.jsonl")
    last = json.dumps(run_log("appended")).encode()
    growing = raw + last
    waiting = read_log(growing, name="runs.jsonl", final=False, fallback_time=WHEN)
    assert (len(waiting.runs), waiting.consumed, waiting.lines) == (3, len(raw), 4)
    settled = read_log(growing, name="runs.jsonl", final=True, fallback_time=WHEN)
    assert (len(settled.runs), settled.consumed, settled.lines) == (4, len(growing), 4)
    assert settled.runs[-1].where == "line 5" and settled.runs[-1].record.user_prompt == "appended"


def test_truncated_last_line_of_a_final_file_is_a_failure_naming_the_line():
    raw = format_fixture("runs.jsonl") + json.dumps(run_log("cut")).encode()[:40]
    read = read_log(raw, name="runs.jsonl", final=True)
    assert len(read.runs) == 3
    [failure] = read.failures
    assert failure.where == "line 5" and failure.key == sha256(raw.splitlines()[-1])
    assert failure.reason.startswith("truncated JSON: the line ends early") and "no newline after it" in failure.reason


def test_reading_on_from_an_offset_adds_only_the_new_lines():
    first = format_fixture("runs.jsonl")
    earlier = read_log(first, name="runs.jsonl", final=False)
    appended = first + json.dumps(run_log("new")).encode() + b"\n"
    later = read_json_lines(appended[earlier.consumed :], first_line=1 + earlier.lines, final=False, fallback_time=WHEN)
    assert [(run.where, run.record.user_prompt) for run in later.runs] == [("line 5", "new")]
    assert later.consumed == len(appended) - earlier.consumed


def test_bad_lines_are_failures_and_never_block_the_others():
    good = json.dumps(run_log("fine")).encode()
    lines = [good, b"{not json", b'{"caf\xe9": 1}', b'{"question": "q"}', b"[1, 2]", good.replace(b"fine", b"also fine")]
    read = read_log(b"\r\n".join(lines) + b"\r\n", name="runs.jsonl", final=True, fallback_time=WHEN)
    assert [run.where for run in read.runs] == ["line 1", "line 6"]
    failures = {failure.where: failure for failure in read.failures}
    assert failures["line 2"].reason.startswith("invalid JSON at column 2")
    assert failures["line 2"].key == sha256(b"{not json\r")
    assert failures["line 3"].reason.startswith("not valid UTF-8: byte 5 of the line")
    assert "no 'messages' list" in failures["line 4"].reason
    assert failures["line 5"].reason.startswith("an array of 2 elements, not a run")


def test_byte_order_mark_and_empty_json_lines_file():
    raw = b"\xef\xbb\xbf" + format_fixture("runs.jsonl")
    assert len(read_log(raw, name="runs.jsonl", final=True).runs) == 3
    empty = read_log(b"", name="new.jsonl", final=False)
    assert (empty.runs, empty.failures, empty.consumed, empty.appendable) == ((), (), 0, True)


def test_json_file_holding_values_one_per_line_is_read_as_json_lines():
    raw = format_fixture("runs.jsonl")
    read = read_log(raw, name="export.json", final=True)
    assert read.format == formats.JSON_LINES and read.appendable and len(read.runs) == 3
    assert read.detection.startswith("a .json file holding several JSON values, one per line")


def test_misnamed_jsonl_file_holding_one_document_is_read_as_that_document():
    raw = format_fixture("message_history.json")
    read = read_log(raw, name="history.jsonl", final=True)
    assert read.format == formats.MESSAGE_HISTORY and read.runs[0].key == sha256(raw)


def test_a_line_read_by_the_slow_parser_keeps_its_values_in_the_stored_text():
    line = json.dumps(run_log("nan")).replace('"output_tokens": 2', '"output_tokens": NaN').encode()
    [run] = read_log(line + b"\n", name="runs.jsonl", final=True).runs
    assert "NaN" in run.text and run.key == sha256(run.text)
    assert parse_stored_run(run.text) == run.record
    assert any(note.startswith("output_tokens") for note in run.record.value_notes)


# ---------------------------------------------------------------- OTLP JSON traces


def test_otlp_request_gives_its_spans_to_the_caller():
    raw = format_fixture("otlp_request.json")
    read = read_log(raw, name="trace.json", final=True)
    assert read.format == formats.OTLP_TRACES
    assert read.detection == "a JSON object with a 'resourceSpans' list (2 spans)"
    assert (read.runs, read.failures, read.consumed, read.appendable) == ((), (), len(raw), False)
    assert {span["spanId"] for span in read.spans} == {"eee19b7ec3c1b174", "eee19b7ec3c1b175"}


def test_collector_file_of_otlp_lines_is_appendable_json_lines():
    line = orjson.dumps(json.loads(format_fixture("otlp_request.json")))
    one = read_log(line + b"\n", name="traces.json", final=False)
    assert one.format == formats.JSON_LINES and one.appendable and len(one.spans) == 2
    two = read_log(line + b"\n" + line + b"\n", name="traces.json", final=False)
    assert two.format == formats.JSON_LINES and len(two.spans) == 4
    assert two.detection == "a .json file holding several JSON values, one per line (2 OTLP requests)"


# ---------------------------------------------------------------- the real logs


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="the public real-log collection is not beside the project")
def test_every_valid_real_log_reads_as_at_least_one_run():
    paths = sorted((REAL_LOGS / "valid").glob("*.json"))
    assert paths
    for path in paths:
        read = read_log(path.read_bytes(), name=path.name, final=True)
        assert read.runs and not read.failures, path.name
        assert read.runs[0].record.model and not read.runs[0].record.model.endswith("()"), path.name


def test_fixtures_are_small_hand_written_files():
    # Guard for the suite's budget: fixtures of this module stay small.
    names = ["groq_model_repr.json", "model_name_top_level.json", "repr_messages.json", "mixed_repr_messages.json"]
    names += ["message_history.json", "runs_array.json", "runs.jsonl", "otlp_request.json"]
    assert all((FORMAT_FIXTURES / name).stat().st_size < 8000 for name in names)
