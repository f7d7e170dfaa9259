from datetime import UTC, datetime

import pytest

from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring.core.records import ParseError
from llm_monitoring.core.timeline import message_timeline
from llm_monitoring_tests.conftest import fixture_bytes


def parse(name: str):
    return parse_run_log(fixture_bytes(name))


def test_streamed_run_counts_repeated_response_once():
    record = parse("streamed_no_top_usage.json")
    # responses resp-1 (800/100) and resp-final (1500/300, cache 1024) repeated: counted once
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (2300, 400, 1024)
    assert record.requests == 2
    assert record.tool_names == ("search", "search", "search", "read_file")


def test_top_level_usage_wins_and_structured_output_keeps_references():
    record = parse("streamed_structured_output.json")
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (2300, 400, 1024)
    assert record.assistant_answer.startswith("# Drift")
    assert "## References" in record.assistant_answer
    assert "Data drift (drift.md)" in record.answer_references
    assert record.instructions.startswith("Search the docs")


def test_answer_falls_back_to_final_result_tool_args():
    record = parse("streamed_no_top_usage.json")
    assert record.assistant_answer.startswith("# Drift")
    assert "Use the DataDriftPreset." in record.assistant_answer


def test_text_answer_and_times_from_messages():
    record = parse("text_answer_per_response_usage.json")
    assert record.assistant_answer == "Yes, you can join the course late and still submit homework."
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (1500, 60, 512)
    assert record.run_started_at == datetime(2025, 10, 15, 16, 0, 5, 100000, tzinfo=UTC)
    assert record.run_finished_at == datetime(2025, 10, 15, 16, 0, 8, tzinfo=UTC)
    assert record.duration_seconds == pytest.approx(2.9)
    assert record.instructions == "You answer FAQ questions using the search tool."
    assert record.finish_reasons == ("tool_call", "stop")


def test_provider_taken_from_responses_and_system_prompt_parts():
    record = parse("provider_only_in_responses.json")
    assert record.provider == "openai"
    assert record.model == "google/gemma-3-27b-it:free"
    assert record.instructions == "You are a documentation assistant."
    assert record.provider_reported_cost is not None


def test_gemini_empty_thinking_part_is_not_the_answer():
    record = parse("gemini_thinking.json")
    assert record.assistant_answer.startswith("Train it with")
    assert record.tool_names == ("search_wikipedia",)
    assert record.tool_calls[0].args == '{"query": "train model"}'
    assert record.cache_read_tokens == 100


def test_old_pydantic_ai_without_usage_gives_null_tokens_not_zero():
    record = parse("old_pydantic_ai_no_usage.json")
    assert record.input_tokens is None and record.output_tokens is None
    assert record.instructions == "You help with Hardhat."
    assert record.assistant_answer == "Run `npx hardhat test`."


def test_failed_response_with_zero_usage_counts_as_unreported():
    record = parse("groq_error_response.json")
    assert record.input_tokens is None
    assert record.finish_reasons == ("error",)


def test_role_content_messages():
    record = parse("role_content_messages.json")
    assert record.user_prompt == "hi"
    assert record.assistant_answer is None
    assert record.run_started_at == datetime(2026, 4, 6, 14, 45, 28, 679223, tzinfo=UTC)


def test_string_output_and_naive_timestamps_as_utc():
    record = parse("string_output_naive_time.json")
    assert record.assistant_answer.startswith("Stolen credentials")
    assert record.run_started_at == datetime(2024, 11, 17, 20, 0, tzinfo=UTC)
    assert record.duration_seconds == 5.0
    assert (record.input_tokens, record.output_tokens) == (150, 85)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty file"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "JSON is an array, not an object"),
        (b'{"agent_name": "x", "messages": [', "truncated JSON"),
        (b'{"question": "q", "answer": "a"}', "no 'messages' list"),
        (b'{"messages": "nope"}', "'messages' is a string"),
        (b"{not json}", "invalid JSON"),
    ],
)
def test_files_that_are_not_run_logs_give_a_reason(raw: bytes, reason: str):
    with pytest.raises(ParseError) as error:
        parse_run_log(raw)
    assert reason in error.value.reason


def test_log_without_any_timestamp_uses_the_fallback_time():
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    record = parse_run_log(b'{"messages": [{"role": "user", "content": "hi"}]}', fallback_time=moment)
    assert record.run_started_at == moment


def test_documents_the_fast_parser_rejects_still_parse():
    # NaN and lone surrogates are legal for Python's json module, not for orjson: the document still
    # parses, and a lone surrogate (which no UTF-8 text can hold) becomes U+FFFD.
    raw = (
        b'{"agent_name": "a\\ud800", "score": NaN, "messages": [{"role": "user", "content": "hi"},'
        b' {"role": "assistant", "content": "hello"}]}'
    )
    record = parse_run_log(raw, fallback_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert record.agent_name == "a\ufffd"
    assert (record.user_prompt, record.assistant_answer) == ("hi", "hello")


def test_role_content_tool_messages_are_tool_returns_in_the_record_and_the_timeline():
    raw = (
        b'{"messages": [{"role": "system", "content": "Be brief."}, {"role": "tool", "content": "doc text"},'
        b' {"role": "user", "content": "What is dbt?"}, {"role": "assistant", "content": "A tool."}]}'
    )
    record = parse_run_log(raw, fallback_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert (record.user_prompt, record.assistant_answer) == ("What is dbt?", "A tool.")
    kinds = [entry.kind for entry in message_timeline(raw.decode())]
    assert kinds == ["system", "tool_return", "user", "answer"]
