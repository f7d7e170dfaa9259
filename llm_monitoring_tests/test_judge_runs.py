"""LLM judges end to end against a local OpenAI-compatible server (real HTTP through pydantic-ai's OpenAI
client, on 127.0.0.1): the command line's estimate and run, a Dagster backfill of a range of days in
one run with kappa in its metadata, the agreement gate, and judging each ingest's new runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring import cli
from llm_monitoring.core.agreement import cohen_kappa
from llm_monitoring.defs import keys
from llm_monitoring.defs.aggregates.assets import daily_eval_summary
from llm_monitoring.defs.judges.assets import judge_verdicts
from llm_monitoring.defs.judges.sensors import judge_new_runs_sensor
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import daily_eval_summary as daily_eval_summary_table
from llm_monitoring.storage.schema import eval_checks, feedback, judge_calls
from llm_monitoring_tests.history_data import check_results, materializations, metadata, range_tags, select, store_days
from llm_monitoring_tests.judge_server import FakeJudgeServer, judges_yaml

REPO = Path(__file__).resolve().parents[1]
DAGSTER_MATERIALIZE = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_monitoring.definitions"]


def verdicts(database: Database) -> list[tuple[int, str, bool]]:
    return select(
        database,
        sa.select(eval_checks.c.log_id, eval_checks.c.evaluator_version, eval_checks.c.passed).where(
            eval_checks.c.evaluator_version.like("judge:%")
        ),
    )


@pytest.fixture
def judge_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Path:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("JUDGES_FILE", str(tmp_path / "judges.yaml"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path / "judges.yaml"


def test_command_line_estimates_then_judges_200_runs_once_within_the_judges_concurrency(
    judge_env: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
):
    database = Database(sqlite_url)
    database.ensure_schema()
    first = datetime.now(UTC).date() - timedelta(days=5)
    ids = [log_id for day_ids in store_days(database, first, 4, 50).values() for log_id in day_ids]
    assert len(ids) == 200
    # Three answers refused with 429 and Retry-After before the server lets calls through.
    with FakeJudgeServer(latency=0.02, rate_limited=3, retry_after=0.05).running() as server:
        judge_env.write_text(judges_yaml(server.base_url, concurrency=4), encoding="utf-8")

        assert cli.main(["judge", "estimate", "--judge", "helpfulness"]) == 0
        estimate = capsys.readouterr().out
        assert "200 runs to judge of 200 (0 already judged, 0 sampled out)" in estimate
        assert re.search(r"Total estimated cost: \$0\.\d{4} USD", estimate), estimate
        assert server.requests == 0  # nothing is sent to estimate

        assert cli.main(["judge", "run", "--judge", "helpfulness"]) == 0
        judged = capsys.readouterr().out
        assert "200 runs judged, 0 already judged (not sent)" in judged and "0 failed calls" in judged
        assert server.requests == 203 and server.refused == 3  # each refused call retried once
        assert server.max_in_flight == 4  # concurrent up to the judge's concurrency, never more

        rows = verdicts(database)
        assert sorted(log_id for log_id, _, _ in rows) == sorted(ids)  # exactly one verdict per run
        assert all(version.startswith("judge:helpfulness:") for _, version, _ in rows)

        assert cli.main(["judge", "run", "--judge", "helpfulness"]) == 0
        assert "0 runs judged, 200 already judged (not sent)" in capsys.readouterr().out
        assert server.requests == 203  # running again sends no request

    calls = select(database, sa.select(judge_calls.c.cost, judge_calls.c.input_tokens, judge_calls.c.requests))
    assert len(calls) == 200 and all(cost > 0 and tokens > 150 for cost, tokens, _ in calls)
    assert sum(requests for _, _, requests in calls) == 203
    summary = select(
        database,
        sa.select(daily_eval_summary_table.c.runs, daily_eval_summary_table.c.judge_cost).where(
            daily_eval_summary_table.c.check_name == "helpfulness"
        ),
    )
    assert sum(runs for runs, _ in summary) == 200
    assert sum(cost for _, cost in summary) == sum(cost for cost, _, _ in calls)  # the summary sums what judging cost
    database.dispose()


def test_a_bad_judges_file_is_one_line_naming_the_judge_and_field(judge_env: Path, capsys: pytest.CaptureFixture[str]):
    judge_env.write_text("judges:\n  - name: helpfulness\n    model: openai:gpt-4o-mini\n    rubric: 'Judge {answr}'\n", encoding="utf-8")
    assert cli.main(["judge", "estimate"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "judge 'helpfulness': field 'rubric': unknown placeholder {answr}" in error
    assert error.count("\n") == 1


def test_a_backfill_of_a_range_is_one_run_with_kappa_in_its_metadata_and_the_gate_warns_when_it_drops(
    postgres_env_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    database = postgres_env_database
    store_days(database, date(2026, 1, 5), 3, 12)
    monkeypatch.setenv("JUDGES_FILE", str(tmp_path / "judges.yaml"))
    resources = {"database": DatabaseResource()}
    with FakeJudgeServer(latency=0.01).running() as server, dg.instance_for_test() as instance:
        (tmp_path / "judges.yaml").write_text(judges_yaml(server.base_url, concurrency=6), encoding="utf-8")
        first = dg.materialize(
            [judge_verdicts, daily_eval_summary], instance=instance, resources=resources, tags=range_tags("2026-01-05", "2026-01-07")
        )
        assert first.success and instance.get_runs_count() == 1  # a range of three days is one run
        found = materializations(first)
        assert [m.partition for m in found["judge_verdicts"]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
        assert len(found["daily_eval_summary"]) == 3
        stats = metadata(found["judge_verdicts"][0])
        assert (stats["runs_judged"], stats["skipped_cached"], stats["failed_calls"]) == (36, 0, 0)
        assert stats["cost_usd"] > 0 and stats["input_tokens"] > 0 and 0 <= stats["pass_rate"] <= 1
        assert server.requests == 36

        # Reviewers rate 30 judged runs: they agree with the judge on all but 6.
        judged = sorted(verdicts(database))[:30]
        ratings = [(log_id, passed if index >= 6 else not passed) for index, (log_id, _, passed) in enumerate(judged)]
        with database.transaction() as connection:
            connection.execute(
                sa.insert(feedback), [{"log_id": log_id, "is_good": good, "created_at": datetime.now(UTC)} for log_id, good in ratings]
            )
        expected = cohen_kappa(30, 24, sum(passed for _, _, passed in judged), sum(good for _, good in ratings))

        again = dg.materialize([judge_verdicts], instance=instance, resources=resources, tags=range_tags("2026-01-05", "2026-01-07"))
        stats = metadata(materializations(again)["judge_verdicts"][0])
        assert server.requests == 36 and stats["runs_judged"] == 0 and stats["skipped_cached"] == 36
        assert stats["helpfulness_pairs_with_feedback"] == 30
        assert stats["helpfulness_kappa"] == pytest.approx(expected, abs=1e-4)
        assert "helpfulness" in stats["agreement"]

        from llm_monitoring.definitions import defs

        gates = defs.resolve_job_def(keys.GATES_JOB)
        monkeypatch.setenv("QUALITY_MIN_AGREEMENT_PAIRS", "20")
        monkeypatch.setenv("QUALITY_MIN_JUDGE_KAPPA", str(round(expected + 0.05, 2)))
        low = check_results(gates.execute_in_process(instance=instance))["judge_agreement"]
        assert not low.passed and low.severity == dg.AssetCheckSeverity.WARN
        assert f"kappa {expected:.2f} (below" in low.description
        monkeypatch.setenv("QUALITY_MIN_JUDGE_KAPPA", str(round(expected - 0.05, 2)))
        assert check_results(gates.execute_in_process(instance=instance))["judge_agreement"].passed
        monkeypatch.setenv("QUALITY_MIN_AGREEMENT_PAIRS", "31")  # too few rated runs: not judged, not failed
        few = check_results(gates.execute_in_process(instance=instance))["judge_agreement"]
        assert few.passed and "nothing to judge yet" in few.description


def test_judges_with_on_ingest_judge_the_new_runs_of_each_ingest_and_nothing_else(
    judge_env: Path, sqlite_url: str, logs_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from llm_monitoring.definitions import defs

    monkeypatch.setenv("LOGS_DIR", str(logs_dir))
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    database = Database(sqlite_url)
    ingest = defs.resolve_job_def(keys.INGEST_JOB)
    resources = {"database": DatabaseResource()}
    with FakeJudgeServer().running() as server, dg.instance_for_test() as instance:
        judge_env.write_text(judges_yaml(server.base_url, on_ingest="true"), encoding="utf-8")

        def tick(cursor: str | None) -> dg.SensorResult:
            with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources) as context:
                return judge_new_runs_sensor.evaluate_tick(context)

        write_sample_logs(logs_dir, 4, seed=1, start=datetime(2026, 2, 1, 8, tzinfo=UTC))
        assert ingest.execute_in_process(instance=instance, run_config=keys.ingest_run_config([])).success
        started = tick(None)  # the first tick starts from now: history is judged on purpose only
        assert not started.run_requests

        write_sample_logs(logs_dir, 3, seed=2, start=datetime(2026, 2, 3, 8, tzinfo=UTC), spread=timedelta(days=1, hours=2))
        assert ingest.execute_in_process(instance=instance, run_config=keys.ingest_run_config([])).success
        new_ids = [row.id for row in select(database, sa.text("SELECT id FROM llm_logs WHERE run_started_at >= '2026-02-03'"))]
        result = tick(started.cursor)
        (request,) = result.run_requests
        assert request.job_name == keys.JUDGE_JOB
        assert (request.tags[keys.RANGE_START_TAG], request.tags[keys.RANGE_END_TAG]) == ("2026-02-03", "2026-02-04")
        run = defs.resolve_job_def(keys.JUDGE_JOB).execute_in_process(instance=instance, tags=request.tags, run_config=request.run_config)
        assert run.success
        assert sorted(log_id for log_id, _, _ in verdicts(database)) == sorted(new_ids) and server.requests == 3
        assert not tick(result.cursor).run_requests  # nothing new

        judge_env.write_text(judges_yaml(server.base_url), encoding="utf-8")  # no judge says on_ingest
        write_sample_logs(logs_dir, 1, seed=3, start=datetime(2026, 2, 5, 8, tzinfo=UTC))
        assert ingest.execute_in_process(instance=instance, run_config=keys.ingest_run_config([])).success
        quiet = tick(result.cursor)
        assert not quiet.run_requests and "no judge says on_ingest" in quiet.skip_message
    database.dispose()


@pytest.mark.e2e  # runs the dagster command line
def test_dagster_asset_materialize_of_a_partition_range_is_one_run(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    database = Database(url)
    database.ensure_schema()
    store_days(database, date(2026, 1, 4), 4, 3)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with FakeJudgeServer().running() as server:
        (tmp_path / "judges.yaml").write_text(judges_yaml(server.base_url), encoding="utf-8")
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(REPO),
            "JUDGES_FILE": str(tmp_path / "judges.yaml"),
        }
        materialized = subprocess.run(
            [*DAGSTER_MATERIALIZE, "--select", "judge_verdicts", "--partition-range", "2026-01-05...2026-01-07"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert materialized.returncode == 0, materialized.stdout + materialized.stderr
    assert server.requests == 9  # three days of three runs, the day before left out
    assert len(verdicts(database)) == 9
    database.dispose()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs_count() == 1
