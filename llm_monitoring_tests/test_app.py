"""The review app under Streamlit's AppTest, on real SQLite and Postgres databases."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from llm_monitoring.core.parsing import parse_log_bytes
from llm_monitoring.core.records import CheckResult
from llm_monitoring.core.timeline import message_timeline
from llm_monitoring.feedback import list_feedback, save_feedback
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.samples import PROFILES, make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.history import replace_checks_in_window
from llm_monitoring.storage.judgements import Judgement, store_judgements
from llm_monitoring.storage.review import SEARCH_TEXT_CHARS, SEARCH_WORDS, InvalidSearch, RunFilters, filter_options, list_runs, page_key
from llm_monitoring.storage.review_totals import run_totals
from llm_monitoring.storage.rollups import current_checks
from llm_monitoring.storage.run_detail import run_checks
from llm_monitoring.storage.runs import get_log, run_summary
from llm_monitoring.storage.schema import llm_logs
from llm_monitoring_tests.history_data import judge_verdict

APP = Path(__file__).resolve().parents[1] / "llm_monitoring" / "app.py"
REAL_LOGS = Path(__file__).resolve().parents[2] / "shared" / "reallogs" / "valid"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def store_logs(database: Database, logs: Iterable[tuple[str, bytes]]) -> list[int]:
    """Parse, price, evaluate and store run logs as the ingest does; returns their ids in order."""
    runs = []
    for name, raw in logs:
        runs.append(run_from_bytes(raw, name, fallback_time=START))
    result = store_runs(database, runs)
    return [result.inserted[run.content_hash] for run in runs]


def sample_logs(count: int, *, seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """`count` runs an hour apart, cycling through the sample agents (so providers alternate)."""
    rng = random.Random(seed)
    for index in range(count):
        started = START + timedelta(hours=index)
        log = make_run_log(rng, started, profile=PROFILES[index % len(PROFILES)])
        yield f"logs/run_{index:03d}.json", json.dumps(log).encode()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, database: Database, database_url: str) -> Database:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database


def started_app() -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def texts(app: AppTest) -> str:
    """Everything the page says in text elements, one string."""
    parts: list[str] = []
    for kind in ("title", "caption", "markdown", "code", "success", "error", "info", "warning", "subheader", "text"):
        parts += [str(element.value) for element in getattr(app, kind)]
    for kind in ("caption", "markdown"):
        parts += [str(element.value) for element in getattr(app.sidebar, kind)]
    parts += [f"{metric.label} {metric.value}" for metric in app.metric]
    return "\n".join(parts)


def run_ids(app: AppTest) -> list[int]:
    return [int(value) for value in app.dataframe[0].value["Run"]]


def metric(app: AppTest, label: str) -> str:
    return next(item.value for item in app.metric if item.label == label)


def test_list_shows_runs_newest_first_with_totals_and_newest_selected(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(12))
    app = started_app()

    assert app.title[0].value == "LLM Log Monitor"
    assert "Browse ingested logs, view evaluation results, and add feedback." in texts(app)
    assert run_ids(app) == sorted(ids, reverse=True)
    assert metric(app, "Runs") == "12"
    summary = run_summary(app_env)
    assert metric(app, "Tokens in") == f"{summary['input_tokens']:,}"
    newest = max(ids)
    assert app.selectbox(key="selected_run").value == newest
    assert f"Run #{newest}" in texts(app)
    assert "Your feedback on run #" + str(newest) in texts(app)


def test_filters_narrow_the_list_and_the_totals(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(10))
    app = started_app()

    app.selectbox(key="provider").select("openai").run()
    shown = run_ids(app)
    openai_ids = [log_id for log_id in ids if get_log(app_env, log_id)["provider"] == "openai"]
    assert sorted(shown) == sorted(openai_ids) and 0 < len(shown) < len(ids)
    assert metric(app, "Runs") == str(len(openai_ids))
    assert app.selectbox(key="selected_run").value == max(openai_ids)

    word = max(re.findall(r"\w+", get_log(app_env, openai_ids[0])["user_prompt"]), key=len).upper()
    app.text_input(key="search").input(word).run()
    found = run_ids(app)
    assert openai_ids[0] in found
    for log_id in found:
        log = get_log(app_env, log_id)
        assert word.lower() in (log["user_prompt"] + log["assistant_answer"]).lower()
        assert log["provider"] == "openai"


def test_check_filter_keeps_runs_whose_check_failed(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(10))
    app = started_app()

    app.selectbox(key="check").select("tool_call_search").run()
    app.radio(key="check_outcome").set_value("failed").run()
    failed = run_ids(app)
    # Only the support bot has no search tool, so only its runs fail this check.
    expected = [log_id for log_id in ids if get_log(app_env, log_id)["agent_name"] == "support_bot"]
    assert sorted(failed) == sorted(expected)


def test_pager_walks_older_and_newer_pages_and_back_to_the_newest(app_env: Database) -> None:
    ids = sorted(store_logs(app_env, sample_logs(25)), reverse=True)
    app = started_app()
    app.number_input(key="page_size").set_value(10).run()
    assert run_ids(app) == ids[:10]
    assert "Page 1 · runs 1–10 of 25, newest first" in texts(app)
    assert app.button(key="page_newer").disabled and app.button(key="page_newest").disabled

    app.button(key="page_older").click().run()
    app.button(key="page_older").click().run()
    assert run_ids(app) == ids[20:]
    assert "Page 3 · runs 21–25 of 25, newest first" in texts(app)
    assert app.button(key="page_older").disabled
    assert app.selectbox(key="selected_run").value == ids[20]

    app.button(key="page_newer").click().run()
    assert run_ids(app) == ids[10:20]
    assert "Page 2 · runs 11–20 of 25" in texts(app)
    app.button(key="page_newest").click().run()
    assert run_ids(app) == ids[:10]

    # Another filter starts again at the newest page.
    app.button(key="page_older").click().run()
    app.selectbox(key="provider").select("openai").run()
    openai = [log_id for log_id in ids if get_log(app_env, log_id)["provider"] == "openai"]
    assert run_ids(app) == openai[:10]
    assert "Page 1 · " in texts(app)


def test_totals_of_a_filter_without_running_totals_stop_at_the_cap_until_asked(app_env: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = store_logs(app_env, sample_logs(12))
    monkeypatch.setattr("llm_monitoring.app_runs.TOTALS_CAP", 5)
    app = started_app()
    app.number_input(key="page_size").set_value(10).run()
    app.selectbox(key="feedback_filter").select("Without feedback").run()
    assert metric(app, "Runs") == "5+"
    assert metric(app, "Tokens in") == "-"
    assert "of 5+, newest first" in texts(app)
    app.button(key="count_all_button").click().run()
    assert metric(app, "Runs") == "12"
    assert metric(app, "Tokens in") == f"{run_summary(app_env)['input_tokens']:,}"
    assert run_ids(app) == sorted(ids, reverse=True)[:10]


def test_a_text_search_counts_its_runs_only_when_asked(app_env: Database) -> None:
    store_logs(app_env, sample_logs(30))
    app = started_app()
    app.number_input(key="page_size").set_value(10).run()
    matching = list_runs(app_env, RunFilters(text="the"), limit=1000)
    assert len(matching) > 11
    app.text_input(key="search").input("the").run()
    assert metric(app, "Runs") == "11+"  # a full page and at least one more
    assert run_ids(app) == [row["id"] for row in matching[:10]]
    app.button(key="count_all_button").click().run()
    assert metric(app, "Runs") == str(len(matching))
    # A search whose runs fit on the first page is totalled from that page, exactly.
    app.text_input(key="search").input("docker capybara").run()
    assert metric(app, "Runs") == "0"


def test_feedback_form_stores_a_row_and_the_confirmation_stays_visible(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(3))
    app = started_app()
    newest = max(ids)

    app.radio(key="fb_verdict").set_value("👎 No")
    app.text_area(key="fb_comments").input("Misses the second step")
    app.text_area(key="fb_reference").input("Step two is ...")
    app.text_input(key="fb_reviewer").input("ana")
    app.button(key="fb_submit").click().run()

    assert not app.exception
    stored = list_feedback(app_env, newest)
    assert [(entry.is_good, entry.comments, entry.reference_answer, entry.reviewer) for entry in stored] == [
        (False, "Misses the second step", "Step two is ...", "ana")
    ]
    assert any(f"saved for run #{newest}" in item.value for item in app.success)
    # The form is empty again, the reviewer's name is kept, and the history shows the row.
    assert app.text_area(key="fb_comments").value == ""
    assert app.text_input(key="fb_reviewer").value == "ana"
    history = app.dataframe[-1].value
    assert list(history["Comments"]) == ["Misses the second step"]


def test_feedback_form_without_a_verdict_stores_nothing(app_env: Database) -> None:
    store_logs(app_env, sample_logs(2))
    app = started_app()
    app.text_area(key="fb_comments").input("forgot to choose")
    app.button(key="fb_submit").click().run()
    assert list_feedback(app_env) == []
    assert any("Choose" in item.value for item in app.warning)


def test_feedback_filter_shows_runs_with_bad_feedback(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(6))
    save_feedback(app_env, ids[1], False, comments="wrong")
    save_feedback(app_env, ids[2], True)
    app = started_app()
    app.selectbox(key="feedback_filter").select("With 👎").run()
    assert run_ids(app) == [ids[1]]
    app.selectbox(key="feedback_filter").select("Without feedback").run()
    assert sorted(run_ids(app)) == sorted(set(ids) - {ids[1], ids[2]})


def test_password_never_appears(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    # The test server trusts local connections, so a password in the URL is accepted and ignored.
    secret = "s3cret-Pa55word"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url
    database = Database(url)
    database.ensure_schema()
    store_logs(database, sample_logs(2))
    monkeypatch.setenv("DATABASE_URL", url)
    app = started_app()
    page = texts(app)
    assert "Database: PostgreSQL" in page  # the kind only: no URL, host, port or user
    host_and_port = url.split("@", 1)[1].split("/", 1)[0]
    for part in (secret, host_and_port, "postgresql://", "postgres:***@"):
        assert part not in page and part not in repr(app)
    database.dispose()


def test_unreachable_database_shows_a_message_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://monitor:hunter2-secret@127.0.0.1:9/monitoring?connect_timeout=2")
    app = started_app()
    assert app.error, "expected an error message"
    message = app.error[0].value
    assert message == "Cannot reach the database; the app's server log says why."
    for part in ("hunter2-secret", "127.0.0.1", "monitor:", "postgresql"):
        assert part not in texts(app) and part not in repr(app)
    assert not app.exception


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://monitor:Zq7kP@Wx9mR@127.0.0.1:9/monitoring",  # '@' in the password, not encoded
        "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:port/monitoring",
        "postgres//monitor:Zq7kPWx9mR@127.0.0.1/monitoring",
        "mysql://monitor:Zq7kPWx9mR@127.0.0.1/monitoring",
    ],
)
def test_malformed_database_url_shows_one_line_without_the_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    app = started_app()
    [error] = app.error
    assert error.value.startswith("Check DATABASE_URL: it is not usable (")
    assert "\n" not in error.value
    for part in ("Zq7kP", "Wx9mR", "127.0.0.1", "monitor:"):
        assert part not in texts(app) and part not in repr(app)
    assert not app.exception


def test_a_too_long_search_says_which_limit_it_hit(app_env: Database) -> None:
    store_logs(app_env, sample_logs(3))
    app = started_app()
    app.text_input(key="search").input("docker " * 2_000).run()
    assert not app.exception and not app.error
    assert [item.value for item in app.warning] == [f"Search text is limited to {SEARCH_TEXT_CHARS:,} characters; this one has 13,999."]
    app.text_input(key="search").input("a b " * 40).run()
    assert [item.value for item in app.warning] == [f"Search is limited to {SEARCH_WORDS} words; this one has 80."]
    app.text_input(key="search").input("docker").run()
    assert not app.warning and run_ids(app)


def test_a_statement_the_database_refuses_is_not_called_an_outage(app_env: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store_logs(app_env, sample_logs(2))
    app = started_app()
    with app_env.transaction() as connection:  # a table the page reads is gone: the server is fine
        connection.exec_driver_sql("DROP TABLE feedback")
    app.text_input(key="search").input("docker").run()
    assert not app.exception
    [error] = app.error
    assert error.value.startswith("The database refused this page's query: ") and "feedback" in error.value
    assert "Cannot reach" not in texts(app)


def test_viewers_never_see_a_traceback(monkeypatch: pytest.MonkeyPatch, sqlite_url: str):
    import streamlit

    monkeypatch.setenv("DATABASE_URL", sqlite_url)  # the test's own file, not monitoring.db in the working directory
    started_app()
    assert streamlit.config.get_option("client.showErrorDetails") == "none"


def test_a_dropped_raw_log_is_said_in_the_raw_json_and_timeline(app_env: Database) -> None:
    [log_id] = store_logs(app_env, sample_logs(1))
    with app_env.transaction() as connection:
        connection.execute(sa.update(llm_logs).values(raw_json=None))
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.session_state["raw_open"] = True
    app.session_state["timeline_open"] = True
    app.run()
    assert not app.exception
    dropped = [item.value for item in app.info if "dropped by retention" in item.value]
    assert len(dropped) == 2, [item.value for item in app.info]
    assert f"Run #{log_id}" in texts(app)


def test_empty_database_invites_to_ingest(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    app = started_app()
    assert any("No runs yet" in item.value for item in app.info)


def test_timeline_shows_tool_calls_and_answer_when_opened(app_env: Database) -> None:
    ids = store_logs(app_env, sample_logs(1))
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.session_state["timeline_open"] = True
    app.run()
    assert not app.exception
    log = get_log(app_env, ids[0])
    page = texts(app)
    assert "Tool call `search`" in page
    assert "Tool return `search`" in page
    assert log["user_prompt"] in page


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="the real logs folder is not next to the project")
def test_real_log_shows_prompt_answer_tool_calls_and_checks(app_env: Database) -> None:
    names = sorted(path.name for path in REAL_LOGS.glob("*.json"))
    chosen = next(
        name for name in names if (record := parse_log_bytes((REAL_LOGS / name).read_bytes())[1]).tool_calls and record.assistant_answer
    )
    [log_id] = store_logs(app_env, [(chosen, (REAL_LOGS / chosen).read_bytes())])
    record = parse_log_bytes((REAL_LOGS / chosen).read_bytes())[1]
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.session_state["timeline_open"] = True
    app.run()
    assert not app.exception
    page = texts(app)
    assert record.user_prompt in page
    assert record.assistant_answer.strip()[:200] in page
    assert f"Tool call `{record.tool_calls[0].tool_name}`" in page
    checks = next(frame.value for frame in app.dataframe if "Check" in frame.value.columns)
    assert len(checks) == 7 and set(checks["Result"]) <= {"✅ pass", "❌ fail", "➖ n/a"}
    assert log_id == app.selectbox(key="selected_run").value


def test_a_run_stored_without_a_value_says_which_and_why(app_env: Database) -> None:
    log = make_run_log(random.Random(3), START, profile=PROFILES[0])
    log["usage"]["output_tokens"] = log["messages"][-1]["usage"]["output_tokens"] = -5  # a writer's bug
    [log_id] = store_logs(app_env, [("logs/negative.json", json.dumps(log).encode())])
    app = started_app()
    assert log_id == app.selectbox(key="selected_run").value
    [warning] = [item.value for item in app.warning if "Stored without values" in item.value]
    assert "output_tokens" in warning and "negative" in warning, warning


def judgement(log_id: int, version: str, passed: bool, reason: str, created_at: datetime) -> Judgement:
    return judge_verdict(
        log_id, created_at, version=version, passed=passed, reason=reason, input_tokens=420, output_tokens=35, cost=Decimal("0.000084")
    )


def test_judges_verdict_and_reason_show_next_to_the_runs_feedback(app_env: Database) -> None:
    [log_id] = store_logs(app_env, sample_logs(1))
    now = datetime.now(UTC)
    store_judgements(
        app_env, [judgement(log_id, "judge:helpfulness:aaaaaaaaaaaa", False, "an older rubric said no", now - timedelta(days=1))]
    )
    store_judgements(app_env, [judgement(log_id, "judge:helpfulness:000000000000", True, "answers the question with sources", now)])
    save_feedback(app_env, log_id, True, comments="fine", reviewer="ana")
    app = started_app()
    assert "LLM judges" in texts(app)
    judges = next(frame.value for frame in app.dataframe if "Judge" in frame.value.columns)
    assert list(judges["Judge"]) == ["helpfulness"]  # the newest version's verdict; the older one in an expander
    assert list(judges["Verdict"]) == ["✅ pass"] and list(judges["Reason"]) == ["answers the question with sources"]
    assert list(judges["Reviewers"]) == ["agrees with 1 of 1 rating"]
    older = [frame.value for frame in app.dataframe if "Judge" in frame.value.columns][1]
    assert list(older["Reason"]) == ["an older rubric said no"]
    # The rule checks stay apart: seven of them, whatever the judges said.
    checks = next(frame.value for frame in app.dataframe if "Check" in frame.value.columns)
    assert len(checks) == 7


# ---------------------------------------------------------------------------- the queries behind the app


def test_a_judges_current_verdict_is_its_newest_row_whatever_its_version_hash(database: Database) -> None:
    [log_id] = store_logs(database, sample_logs(1))
    now = datetime.now(UTC)
    # The newer version's hash sorts first: recency, not the text, decides.
    store_judgements(database, [judgement(log_id, "judge:helpfulness:ffffffffffff", True, "old", now - timedelta(hours=1))])
    store_judgements(database, [judgement(log_id, "judge:helpfulness:000000000000", False, "new", now)])
    failed = RunFilters(check_name="helpfulness", check_outcome="failed")
    assert [row["id"] for row in list_runs(database, failed)] == [log_id]
    assert list_runs(database, RunFilters(check_name="helpfulness", check_outcome="passed")) == []
    assert "helpfulness" in filter_options(database).check_names
    assert all(not row["evaluator_version"].startswith("judge:") for row in run_checks(database, log_id))
    [listed] = list_runs(database, RunFilters())
    rules = [row["passed"] for row in current_checks(run_checks(database, log_id))]
    assert listed["checks_failed"] == rules.count(False) + 1  # the judge's current verdict counts once


def test_totals_equal_the_sum_of_the_listed_runs(database: Database) -> None:
    store_logs(database, sample_logs(15))
    for filters in (RunFilters(), RunFilters(provider="openai"), RunFilters(check_name="answer_clear", check_outcome="passed")):
        rows = list_runs(database, filters, limit=1000)
        totals = run_totals(database, filters)
        assert totals.runs == len(rows)
        assert totals.input_tokens == sum(row["total_input_tokens"] or 0 for row in rows)
        assert totals.total_cost == sum((row["total_cost"] for row in rows if row["total_cost"] is not None), Decimal(0))
        assert totals.unpriced_runs == sum(1 for row in rows if row["total_cost"] is None)


def test_list_is_newest_first_pages_without_overlap_and_never_reads_raw_json(database: Database) -> None:
    ids = store_logs(database, sample_logs(7))
    first = list_runs(database, RunFilters(), limit=4)
    second = list_runs(database, RunFilters(), limit=4, after=page_key(first[-1]))
    assert [row["id"] for row in first + second] == sorted(ids, reverse=True)
    assert "raw_json" not in first[0]
    assert {"checks_passed", "checks_failed", "checks_not_applicable", "feedback_good", "feedback_bad"} <= set(first[0])


def test_check_filter_follows_the_newest_evaluator_version(database: Database) -> None:
    [log_id] = store_logs(database, sample_logs(1))
    newer = [CheckResult("answer_clear", False, 0.0, "a newer rule says no")]
    # Version 10 of the rules re-evaluates the run and keeps version 9's rows beside its own.
    replace_checks_in_window(database, START - timedelta(days=1), START + timedelta(days=1), lambda run: newer, "10")
    failed = RunFilters(check_name="answer_clear", check_outcome="failed")
    passed = RunFilters(check_name="answer_clear", check_outcome="passed")
    assert [row["id"] for row in list_runs(database, failed)] == [log_id]
    assert list_runs(database, passed) == []
    assert run_totals(database, failed).runs == 1
    assert run_checks(database, log_id)[0]["evaluator_version"] == "10"
    # The detail panel and the list count the same verdicts: each check's newest row.
    current = {row["check_name"]: row for row in current_checks(run_checks(database, log_id))}
    assert len(current) == 7 and current["answer_clear"]["evaluator_version"] == "10"
    [listed] = list_runs(database, RunFilters())
    outcomes = [row["passed"] for row in current.values()]
    assert (listed["checks_passed"], listed["checks_failed"], listed["checks_not_applicable"]) == (
        outcomes.count(True),
        outcomes.count(False),
        outcomes.count(None),
    )
    assert current["answer_clear"]["passed"] is False


def test_text_search_is_case_insensitive_needs_every_word_and_treats_wildcards_as_text(database: Database) -> None:
    ids = store_logs(database, sample_logs(16))
    docker = {log_id for log_id in ids if "docker" in get_log(database, log_id)["user_prompt"].lower()}
    assert docker
    assert {row["id"] for row in list_runs(database, RunFilters(text="DOCKER"))} == docker
    assert {row["id"] for row in list_runs(database, RunFilters(text="docker windows"))} == docker
    assert list_runs(database, RunFilters(text="docker capybara")) == []
    assert list_runs(database, RunFilters(text="%")) == []


def test_search_within_the_limits_runs_and_beyond_them_says_which_limit(database: Database) -> None:
    store_logs(database, sample_logs(3))
    longest_word = "x" * SEARCH_TEXT_CHARS
    most_words = " ".join(f"word{index:015d}" for index in range(SEARCH_WORDS))
    assert len(most_words) <= SEARCH_TEXT_CHARS
    for text in (longest_word, most_words):
        assert list_runs(database, RunFilters(text=text)) == []
        assert run_totals(database, RunFilters(text=text)).runs == 0
    with pytest.raises(InvalidSearch, match=rf"Search text is limited to {SEARCH_TEXT_CHARS:,} characters; this one has 1,001\."):
        list_runs(database, RunFilters(text=longest_word + "x"))
    with pytest.raises(InvalidSearch, match=rf"Search is limited to {SEARCH_WORDS} words; this one has {SEARCH_WORDS + 1}\."):
        run_totals(database, RunFilters(text=" ".join(["ab"] * (SEARCH_WORDS + 1))))


def test_date_range_and_feedback_filters(database: Database) -> None:
    ids = store_logs(database, sample_logs(30))  # one an hour from START
    day_two = RunFilters(started_from=START + timedelta(days=1), started_before=START + timedelta(days=2))
    assert run_totals(database, day_two).runs == 6  # hours 15 to 20 of the first day are not on day two
    save_feedback(database, ids[0], True)
    assert [row["id"] for row in list_runs(database, RunFilters(has_feedback=True))] == [ids[0]]
    assert [row["id"] for row in list_runs(database, RunFilters(feedback_is_good=True))] == [ids[0]]
    assert list_runs(database, RunFilters(feedback_is_good=False)) == []
    assert run_totals(database, RunFilters(has_feedback=False)).runs == 29


def test_filter_options_are_the_distinct_values(database: Database) -> None:
    store_logs(database, sample_logs(10))
    options = filter_options(database)
    assert options.providers == sorted({profile.provider for profile in PROFILES})
    assert options.agents == sorted({profile.agent_name for profile in PROFILES})
    assert options.models == sorted({profile.model for profile in PROFILES})
    assert len(options.check_names) == 7


# ---------------------------------------------------------------------------- the message timeline


def test_timeline_lists_prompt_tool_calls_returns_and_answer_once_for_a_streamed_run() -> None:
    rng = random.Random(3)
    log = make_run_log(rng, START, profile=next(profile for profile in PROFILES if profile.structured))
    entries = message_timeline(json.dumps(log))
    kinds = [entry.kind for entry in entries]
    assert kinds[0] == "user" and kinds[-1] == "answer"
    assert kinds.count("answer") == 1  # the streamed repeat of the final response is shown once
    calls = [entry for entry in entries if entry.kind == "tool_call"]
    returns = [entry for entry in entries if entry.kind == "tool_return"]
    assert calls and len(calls) == len(returns)
    assert all(call.tool_name == "search" and '"query"' in call.content for call in calls)
    assert json.loads(entries[-1].content)["found_answer"] is True


def test_timeline_reads_role_content_messages_and_skips_empty_thinking() -> None:
    raw = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"parts": [{"part_kind": "thinking", "content": ""}, {"part_kind": "text", "content": "hello"}], "kind": "response"},
            ]
        }
    )
    assert [(entry.kind, entry.content) for entry in message_timeline(raw)] == [("user", "hi"), ("answer", "hello")]
    assert message_timeline("not json") == [] and message_timeline(None) == []
