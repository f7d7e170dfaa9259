from dataclasses import replace

from llm_monitoring.core.evaluation import CHECK_NAMES, evaluate_run
from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring_tests.conftest import fixture_bytes


def results(name: str, **changes):
    record = parse_run_log(fixture_bytes(name))
    if changes:
        record = replace(record, **changes)
    return {check.check_name: check for check in evaluate_run(record)}


def test_seven_checks_by_the_prototype_names():
    assert CHECK_NAMES == (
        "instructions_follow",
        "instructions_avoid",
        "answer_clear",
        "answer_match",
        "answer_citations",
        "completeness",
        "tool_call_search",
    )
    assert set(results("gemini_thinking.json")) == set(CHECK_NAMES)


def test_search_calls_counted_once_per_call_not_per_return_or_stream_repeat():
    checks = results("streamed_structured_output.json")
    avoid = checks["instructions_avoid"]
    assert avoid.passed is True
    assert avoid.score == 3.0
    assert avoid.details == "3 search calls, within the required [3, 6]"


def test_failing_search_limit_detail_says_so():
    checks = results("text_answer_per_response_usage.json", instructions="Do at least 3 and at most 6 searches.")
    assert checks["instructions_avoid"].passed is False
    assert checks["instructions_avoid"].details == "1 search calls, below the required [3, 6]"


def test_structured_answer_references_satisfy_instructions_follow():
    checks = results("streamed_structured_output.json")
    assert checks["instructions_follow"].passed is True
    assert checks["answer_citations"].passed is True


def test_any_tool_with_search_in_its_name_counts():
    assert results("gemini_thinking.json")["tool_call_search"].passed is True  # search_wikipedia
    assert results("old_pydantic_ai_no_usage.json")["tool_call_search"].passed is True  # text_search
    assert results("string_output_naive_time.json")["tool_call_search"].passed is False


def test_not_applicable_is_null_not_failure():
    checks = results("role_content_messages.json")  # no answer
    for name in ("answer_clear", "answer_match", "answer_citations", "completeness"):
        assert checks[name].passed is None
        assert checks[name].details.startswith("not applicable")
    assert checks["instructions_follow"].passed is None
    assert checks["tool_call_search"].passed is False


def test_citation_detail_tells_the_truth_when_failing():
    check = results("text_answer_per_response_usage.json")["answer_citations"]
    assert check.passed is False
    assert check.details == "no URL and no references section in the answer"


def test_answer_clear_on_gemini_run_uses_the_text_not_the_empty_thinking_part():
    check = results("gemini_thinking.json")["answer_clear"]
    assert check.passed is False  # a real, short answer: judged, not "not applicable"
    assert "fewer than 40 words" in check.details


def test_answer_match_does_not_punish_long_answers():
    long_answer = "Yes, you can join the course late. " + "Homework deadlines still apply to everyone. " * 60
    check = results("text_answer_per_response_usage.json", assistant_answer=long_answer)["answer_match"]
    assert check.passed is True
    assert "Jaccard" in check.details


def test_completeness_accepts_lists():
    checks = results("text_answer_per_response_usage.json", assistant_answer="Steps:\n1. Install it\n2. Run it")
    assert checks["completeness"].passed is True
