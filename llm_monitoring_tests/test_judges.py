"""LLM judges: judges.yaml validation, rubrics, versions, sampling, kappa, and the judging service with
pydantic-ai's TestModel and FunctionModel on real databases (cache, batches that survive a crash,
retries, failed calls, budgets, the estimate)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic_ai.exceptions import ModelHTTPError, ModelRateLimitError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from llm_monitoring.core.agreement import Agreement, agreement_by_version, cohen_kappa, judge_agreement
from llm_monitoring.core.judges import (
    JUDGE_INSTRUCTIONS,
    Judge,
    JudgeConfigError,
    RunFields,
    parse_judges,
    render_rubric,
    sampled,
    select_judges,
)
from llm_monitoring.core.records import ToolCall
from llm_monitoring.judging import RetryPolicy, estimate, judge_window, load_judges
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import eval_checks, judge_calls, llm_logs
from llm_monitoring_tests.history_data import select, store_day

DAY = date(2026, 3, 2)
START, END = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
RUBRIC = "Does the answer help?\nQuestion: {prompt}\nAnswer: {answer}"
FAST = RetryPolicy(max_attempts=4, first_delay=0.001, max_delay=0.05)


def judge(**fields: object) -> Judge:
    return Judge.model_validate({"name": "helpfulness", "model": "openai:gpt-4o-mini", "rubric": RUBRIC, **fields})


def verdict_model(decide: Callable[[str], bool] = lambda prompt: True, *, calls: list[str] | None = None) -> FunctionModel:
    """A model that answers every prompt with a verdict, and notes the prompts it was sent."""

    # Async, so pydantic-ai awaits it on the loop: a sync function runs in one of anyio's worker
    # threads, which a test that interrupts the loop could leave behind at exit.
    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = "".join(part.content for part in messages[-1].parts if isinstance(part, UserPromptPart))
        if calls is not None:
            calls.append(prompt)
        passed = decide(prompt)
        args = {"passed": passed, "score": 1.0 if passed else 0.0, "reason": "fits" if passed else "misses"}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)], usage=RequestUsage(input_tokens=400, output_tokens=40))

    return FunctionModel(answer, model_name="gpt-4o-mini")


def judge_rows(database: Database) -> list[tuple]:
    return select(
        database,
        sa.select(eval_checks.c.log_id, eval_checks.c.check_name, eval_checks.c.evaluator_version, eval_checks.c.passed).where(
            eval_checks.c.evaluator_version.like("judge:%")
        ),
    )


@pytest.fixture
def sqlite_database(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    yield database
    database.dispose()


# ---------------------------------------------------------------------------- judges.yaml


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "openai:gpt-4o-mini", "rubric": RUBRIC}, "judge #1: field 'name': required"),
        ({"name": "x", "model": "gpt-4o-mini", "rubric": RUBRIC}, "judge 'x': field 'model': must be provider:model"),
        ({"name": "x", "model": "mistral:large", "rubric": RUBRIC}, "judge 'x': field 'model': provider 'mistral' is not one of"),
        ({"name": "x", "model": "openai:a", "rubric": "Judge {answr}"}, "judge 'x': field 'rubric': unknown placeholder {answr}"),
        ({"name": "x", "model": "openai:a", "rubric": "Judge it"}, "judge 'x': field 'rubric': quotes nothing of the run"),
        ({"name": "x", "model": "openai:a", "rubric": RUBRIC, "concurrency": 0}, "judge 'x': field 'concurrency': Input should be greater"),
        ({"name": "x", "model": "openai:a", "rubric": RUBRIC, "sample_rate": 1.5}, "judge 'x': field 'sample_rate'"),
        ({"name": "x", "model": "openai:a", "rubric": RUBRIC, "temperature": 0}, "judge 'x': field 'temperature': unknown field"),
        ({"name": "answer_clear", "model": "openai:a", "rubric": RUBRIC}, "field 'name': 'answer_clear' is the name of a rule check"),
        ({"name": "x", "model": "anthropic:c", "rubric": RUBRIC, "base_url": "http://h/v1"}, "judge 'x': with base_url the model must be"),
        ({"name": "x", "model": "openai:a", "rubric": RUBRIC, "base_url": "ftp://h"}, "judge 'x': field 'base_url': must be an http"),
        ({"name": "x", "model": "openai:a", "rubric": RUBRIC, "max_cost_usd": -1}, "judge 'x': field 'max_cost_usd'"),
    ],
)
def test_a_bad_judge_is_refused_naming_the_judge_and_the_field(entry: dict, message: str):
    with pytest.raises(JudgeConfigError) as raised:
        parse_judges({"judges": [entry]}, "judges.yaml")
    assert str(raised.value).startswith("judges.yaml: ")
    assert message in str(raised.value)


def test_judges_file_is_read_with_defaults_and_legacy_provider_names(tmp_path: Path):
    path = tmp_path / "judges.yaml"
    path.write_text(
        "judges:\n"
        "  - name: helpfulness\n    model: google-gla:gemini-2.5-flash\n    rubric: 'Q: {prompt} A: {answer}'\n"
        "  - name: grounded\n    model: openai:gpt-4o-mini\n    rubric: 'Tools: {tool_calls}'\n    sample_rate: 0.1\n"
        "    concurrency: 16\n    max_cost_usd: 2.5\n    on_ingest: true\n",
        encoding="utf-8",
    )
    helpfulness, grounded = load_judges(path)
    assert (helpfulness.model, helpfulness.concurrency, helpfulness.sample_rate, helpfulness.on_ingest) == (
        "google:gemini-2.5-flash",
        8,
        1.0,
        False,
    )
    assert (grounded.concurrency, grounded.max_cost_usd, grounded.on_ingest, grounded.uses_tool_calls) == (16, Decimal("2.5"), True, True)
    assert [judge.name for judge in select_judges((helpfulness, grounded), ["grounded"])] == ["grounded"]
    with pytest.raises(JudgeConfigError, match="no judge named 'nope' \\(declared: helpfulness, grounded\\)"):
        select_judges((helpfulness, grounded), ["nope"])


def test_the_example_judges_file_is_valid():
    example = Path(__file__).resolve().parents[1] / "judges.example.yaml"
    names = [judge.name for judge in load_judges(example)]
    assert names == ["helpfulness", "grounded", "reference_match"]


def test_a_missing_named_file_and_bad_yaml_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JUDGES_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(JudgeConfigError, match=r"JUDGES_FILE .*absent\.yaml does not exist"):
        load_judges()
    monkeypatch.delenv("JUDGES_FILE")
    monkeypatch.chdir(tmp_path)
    assert load_judges() == ()  # no ./judges.yaml: no judges
    (tmp_path / "judges.yaml").write_text("judges: [\n", encoding="utf-8")
    with pytest.raises(JudgeConfigError, match=r"judges\.yaml: not valid YAML") as raised:
        load_judges()
    assert "\n" not in str(raised.value)


def test_version_changes_with_model_or_rubric_and_not_with_other_settings():
    base = judge()
    assert base.version.startswith("judge:helpfulness:") and len(base.version) == len("judge:helpfulness:") + 12
    assert judge(concurrency=2, sample_rate=0.5, on_ingest=True).version == base.version
    assert judge(rubric=RUBRIC + " Be strict.").version != base.version
    assert judge(model="openai:gpt-4o").version != base.version
    assert judge(model="google-gla:gemini-2.5-flash").version == judge(model="google:gemini-2.5-flash").version


def test_rubric_quotes_the_run_and_leaves_other_braces_alone():
    run = RunFields("What is 2+2?", "Be brief.", "4", "four", (ToolCall("search", '{"q": "2+2"}'),))
    text = render_rubric('Q: {prompt}\nI: {instructions}\nA: {answer}\nRef: {reference_answer}\nTools:\n{tool_calls}\nJSON {"ok": 1}', run)
    assert text == 'Q: What is 2+2?\nI: Be brief.\nA: 4\nRef: four\nTools:\n- search({"q": "2+2"})\nJSON {"ok": 1}'
    assert "(no reference answer)" in render_rubric("{reference_answer}", RunFields("q", None, "a"))
    long = render_rubric("{answer}", RunFields("q", None, "x" * 30_000))
    assert long.endswith("[... 10,000 more characters not shown]")


def test_sampling_is_decided_by_the_run_alone():
    hashes = [f"{n:064x}" for n in range(0, 2**64, 2**56)] + [f"{n:x}".rjust(64, "f") for n in range(200)]
    chosen = [h for h in hashes if sampled(h, 0.3)]
    assert chosen == [h for h in hashes if sampled(h, 0.3)]
    assert all(sampled(h, 1.0) for h in hashes) and not any(sampled(h, 0.0) for h in hashes)
    assert set(chosen) <= {h for h in hashes if sampled(h, 0.6)}  # a larger sample keeps the smaller one


# ---------------------------------------------------------------------------- agreement


def test_kappa_matches_the_textbook_example_and_is_undefined_without_variation():
    # Cohen's example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4.
    pairs = [("j", "v", True, True)] * 20 + [("j", "v", True, False)] * 5 + [("j", "v", False, True)] * 10 + [("j", "v", False, False)] * 15
    (agreement,) = agreement_by_version(pairs)
    assert agreement.raw_agreement == pytest.approx(0.7)
    assert agreement.kappa == pytest.approx(0.4)
    assert cohen_kappa(10, 10, 10, 10) is None  # both always said yes
    assert cohen_kappa(0, 0, 0, 0) is None
    assert cohen_kappa(4, 0, 2, 2) == pytest.approx(-1.0)


def test_agreement_verdict_needs_enough_pairs_before_it_judges():
    agreement = Agreement("j", "judge:j:1", 20, 10, 10, 10)  # chance-level
    assert not judge_agreement(agreement, 0.4, 30).judged
    verdict = judge_agreement(agreement, 0.4, 20)
    assert verdict.judged and verdict.low and "kappa 0.00 (below 0.40)" in verdict.line


# ---------------------------------------------------------------------------- the service


def test_judging_stores_one_verdict_per_run_and_never_sends_a_judged_run_again(database: Database):
    ids = store_day(database, DAY, 12)
    calls: list[str] = []
    reports = judge_window(database, [judge(concurrency=3)], START, END, model_factory=lambda j: verdict_model(calls=calls), retry=FAST)
    (report,) = reports
    assert (report.judged, report.cached, report.passed, report.failed_calls) == (12, 0, 12, [])
    assert report.input_tokens == 12 * 400 and report.cost > 0 and report.unpriced_calls == 0
    rows = judge_rows(database)
    assert sorted(row.log_id for row in rows) == ids
    assert {row.evaluator_version for row in rows} == {judge().version}
    assert all("Question:" in prompt for prompt in calls) and len(calls) == 12
    costs = select(database, sa.select(judge_calls.c.log_id, judge_calls.c.cost, judge_calls.c.pricing_status, judge_calls.c.requests))
    assert len(costs) == 12 and all(cost > 0 and status == "priced" and requests == 1 for _, cost, status, requests in costs)

    (again,) = judge_window(database, [judge(concurrency=3)], START, END, model_factory=lambda j: verdict_model(calls=calls), retry=FAST)
    assert (again.judged, again.cached, again.requests) == (0, 12, 0) and len(calls) == 12

    # A changed rubric is a new version: every run is judged again, the old verdicts stay.
    (changed,) = judge_window(database, [judge(rubric=RUBRIC + " Be strict.")], START, END, model_factory=lambda j: TestModel(), retry=FAST)
    assert changed.judged == 12 and len(judge_rows(database)) == 24


def test_a_killed_run_keeps_its_committed_batches_and_resumes_without_asking_again(sqlite_database: Database):
    store_day(sqlite_database, DAY, 10)
    sent: list[str] = []

    async def dies_after_seven(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(sent) == 7:
            raise KeyboardInterrupt  # the process is stopped mid-run
        return await verdict_model(calls=sent).function(messages, info)

    with pytest.raises(KeyboardInterrupt):
        judge_window(
            sqlite_database, [judge(concurrency=1)], START, END, model_factory=lambda j: FunctionModel(dies_after_seven), batch_size=3
        )
    assert len(judge_rows(sqlite_database)) == 7  # every answered call was committed
    resumed: list[str] = []
    (report,) = judge_window(sqlite_database, [judge()], START, END, model_factory=lambda j: verdict_model(calls=resumed))
    assert (report.judged, report.cached, len(resumed)) == (3, 7, 3)
    assert not set(resumed) & set(sent)


def test_a_call_that_keeps_failing_gives_no_verdict_and_is_listed(sqlite_database: Database):
    ids = store_day(sqlite_database, DAY, 6)
    bad_prompt: list[str] = []

    async def refuses_one(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = "".join(part.content for part in messages[-1].parts if isinstance(part, UserPromptPart))
        if not bad_prompt or bad_prompt[0] == prompt:
            bad_prompt[:1] = [prompt]
            raise ModelHTTPError(503, "gpt-4o-mini", {"error": "overloaded"})
        return await verdict_model().function(messages, info)

    (report,) = judge_window(
        sqlite_database, [judge(concurrency=1)], START, END, model_factory=lambda j: FunctionModel(refuses_one), retry=FAST
    )
    assert report.judged == 5 and len(report.failed_calls) == 1
    failed_id, reason = report.failed_calls[0]
    assert failed_id == ids[0] and "HTTP 503" in reason and "after 4 attempts" in reason
    assert report.retries == 3 and report.stopped is None
    assert failed_id not in {row.log_id for row in judge_rows(sqlite_database)}  # no verdict, never a false fail


def test_rate_limits_are_retried_after_the_wait_the_server_asks_for(sqlite_database: Database):
    store_day(sqlite_database, DAY, 3)
    refusals = [2]

    async def rate_limited(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if refusals[0]:
            refusals[0] -= 1
            wait = {"retry-after": "0.02"} if refusals[0] else {"Retry-After": "0"}  # fractional (a proxy's), and whole seconds
            raise ModelHTTPError.for_category(ModelRateLimitError, status_code=429, model_name="m", headers=wait)
        return await verdict_model().function(messages, info)

    (report,) = judge_window(
        sqlite_database,
        [judge(concurrency=1)],
        START,
        END,
        model_factory=lambda j: FunctionModel(rate_limited),
        retry=RetryPolicy(first_delay=5),
    )
    assert (report.judged, report.retries, report.failed_calls) == (3, 2, [])
    assert report.retry_wait_seconds == pytest.approx(0.02)  # Retry-After, not the 5 s backoff
    assert report.requests == 5


def test_an_answer_without_a_valid_verdict_is_asked_again_then_counts_as_failed(sqlite_database: Database):
    store_day(sqlite_database, DAY, 2)
    answers = []

    async def rambles(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answers.append(1)
        if len(answers) == 1:  # one slip, then a verdict
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"passed": True, "score": 7, "reason": "x"})])
        if len(answers) > 2:  # never a verdict again
            return ModelResponse(parts=[TextPart("I think it is fine.")])
        return await verdict_model().function(messages, info)

    (report,) = judge_window(
        sqlite_database, [judge(concurrency=1)], START, END, model_factory=lambda j: FunctionModel(rambles), retry=FAST
    )
    assert report.judged == 1 and len(report.failed_calls) == 1
    assert "no valid verdict after 2 answers: the model answered without calling the verdict tool" in report.failed_calls[0][1]
    assert len(answers) == 4


def test_a_rejected_key_stops_the_judge_after_one_call(sqlite_database: Database):
    store_day(sqlite_database, DAY, 5)
    sent = []

    async def unauthorized(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        sent.append(1)
        raise ModelHTTPError(401, "gpt-4o-mini", {"error": "invalid api key"})

    (report,) = judge_window(
        sqlite_database, [judge(concurrency=1)], START, END, model_factory=lambda j: FunctionModel(unauthorized), retry=FAST
    )
    assert len(sent) == 1 and report.judged == 0
    assert report.stopped and "HTTP 401" in report.stopped


def test_budget_stops_sending_before_the_cost_passes_it(sqlite_database: Database):
    store_day(sqlite_database, DAY, 10)
    calls: list[str] = []
    # About $0.00009 a call (400 tokens in, 40 out at gpt-4o-mini's price): room for a few.
    (report,) = judge_window(
        sqlite_database, [judge(concurrency=1, max_cost_usd="0.0003")], START, END, model_factory=lambda j: verdict_model(calls=calls)
    )
    assert 0 < report.judged < 10 and report.budget_skipped == 10 - report.judged
    assert report.cost <= Decimal("0.0003")


def test_sample_rate_judges_a_stable_part_of_the_runs(sqlite_database: Database):
    store_day(sqlite_database, DAY, 40)
    (first,) = judge_window(sqlite_database, [judge(sample_rate=0.5)], START, END, model_factory=lambda j: TestModel())
    assert 0 < first.judged < 40 and first.judged + first.sampled_out == 40
    (again,) = judge_window(sqlite_database, [judge(sample_rate=0.5)], START, END, model_factory=lambda j: TestModel())
    assert again.judged == 0 and again.sampled_out == first.sampled_out


def test_id_ranges_restrict_the_window_to_those_runs(sqlite_database: Database):
    ids = store_day(sqlite_database, DAY, 8)
    (report,) = judge_window(sqlite_database, [judge()], START, END, id_ranges=[(ids[2], ids[4])], model_factory=lambda j: TestModel())
    assert report.judged == 3 and sorted(row.log_id for row in judge_rows(sqlite_database)) == ids[2:5]


def test_estimate_counts_what_would_be_sent_and_prices_it_before_any_call(sqlite_database: Database):
    store_day(sqlite_database, DAY, 10)
    (before,) = estimate(sqlite_database, [judge()], START, END)
    assert (before.runs, before.cached, before.to_judge) == (10, 0, 10)
    assert before.input_tokens > 10 * 150 and before.output_tokens == 10 * 60
    assert before.cost is not None and before.cost > 0
    judge_window(sqlite_database, [judge()], START, END, model_factory=lambda j: TestModel())
    (after,) = estimate(sqlite_database, [judge()], START, END)
    assert (after.cached, after.to_judge, after.input_tokens) == (10, 0, 0)
    (unknown,) = estimate(sqlite_database, [judge(model="openai:no-such-model-9", rubric=RUBRIC + ".")], START, END)
    assert unknown.cost is None and "unknown_model" in unknown.price_status


def test_a_judge_with_base_url_never_sends_the_openai_key_elsewhere(sqlite_database: Database, monkeypatch: pytest.MonkeyPatch):
    from llm_monitoring_tests.judge_server import FakeJudgeServer

    store_day(sqlite_database, DAY, 2)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-secret")
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-key")
    with FakeJudgeServer().running() as server:
        (keyless,) = judge_window(sqlite_database, [judge(base_url=server.base_url)], START, END)
        (keyed,) = judge_window(
            sqlite_database, [judge(base_url=server.base_url, api_key_env="LOCAL_LLM_KEY", rubric=RUBRIC + ".")], START, END
        )
        monkeypatch.delenv("LOCAL_LLM_KEY")
        (missing,) = judge_window(
            sqlite_database, [judge(base_url=server.base_url, api_key_env="LOCAL_LLM_KEY", rubric=RUBRIC + "!")], START, END
        )
    assert keyless.judged == keyed.judged == 2
    assert server.authorizations == ["Bearer not-needed"] * 2 + ["Bearer local-key"] * 2
    assert server.models == ["gpt-4o-mini"] * 4
    assert server.instructions == [JUDGE_INSTRUCTIONS] * 4 and all("Question:" in prompt for prompt in server.prompts)
    assert missing.stopped == "judge 'helpfulness': LOCAL_LLM_KEY (its api_key_env) is not set" and server.requests == 4


# ---------------------------------------------------------------------------- the schema


def test_a_database_with_the_old_short_version_column_is_widened_in_place(database_url: str):
    database = Database(database_url)
    database.ensure_schema()
    if database.dialect == "postgresql":
        with database.transaction() as connection:
            for table in ("eval_checks", "daily_eval_summary"):
                connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN evaluator_version TYPE VARCHAR(16)")
            connection.exec_driver_sql("DELETE FROM schema_state")
        columns = {c["name"]: c["type"] for c in sa.inspect(database.engine).get_columns("eval_checks")}
        assert columns["evaluator_version"].length == 16
    store_day(database, DAY, 1)
    database.ensure_schema()
    (log_id,) = select(database, sa.select(llm_logs.c.id))
    long_version = judge(name="x" * 64).version
    with database.transaction() as connection:
        connection.execute(
            sa.insert(eval_checks).values(
                log_id=log_id[0], check_name="x" * 64, passed=True, score=1.0, details="ok", evaluator_version=long_version
            )
        )
    assert select(database, sa.select(eval_checks.c.evaluator_version).where(eval_checks.c.check_name == "x" * 64)) == [(long_version,)]
    database.dispose()


def test_run_days_before_the_window_are_not_judged(sqlite_database: Database):
    store_day(sqlite_database, DAY - timedelta(days=1), 3)
    store_day(sqlite_database, DAY, 2)
    (report,) = judge_window(sqlite_database, [judge()], START, END, model_factory=lambda j: TestModel())
    assert (report.runs, report.judged) == (2, 2)
