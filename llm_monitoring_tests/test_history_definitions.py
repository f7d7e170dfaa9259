"""The definitions load with the history assets, validate from the CLI, backfill a range from the CLI in one run,
and the deployment's dagster.yaml stores Dagster's runs in Postgres."""

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import daily_usage
from llm_monitoring_tests.history_data import select, store_days

REPO = Path(__file__).resolve().parents[1]


def test_definitions_hold_the_history_lineage_jobs_checks_and_sensor():
    from llm_monitoring.definitions import defs

    graph = defs.get_repository_def().asset_graph
    deps = {key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()}
    assert deps["llm_logs"] == {"log_files"}
    assert deps["eval_checks"] == {"llm_logs"}
    assert deps["daily_usage"] == {"llm_logs", "log_costs"}
    assert deps["daily_eval_summary"] == {"eval_checks", "log_evaluations", "judge_verdicts"}
    assert deps["judge_verdicts"] == {"eval_checks", "feedback"}
    assert deps["daily_feedback"] == {"feedback"}
    for name in ("log_costs", "log_evaluations", "judge_verdicts", "daily_usage", "daily_eval_summary", "daily_feedback"):
        node = graph.get(dg.AssetKey(name))
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert node.partitions_def.end_offset == 1 and node.partitions_def.timezone == "UTC"
        assert node.description and node.group_name in {"history", "aggregates"}
    checks = {key.name for key in graph.asset_check_keys}
    assert {"unpriced_runs_share", "cost_spike", "pass_rate_drop", "eval_coverage", "recent_parse_failures"} <= checks
    for job in ("reprice_logs", "reevaluate_logs", "daily_aggregates_job", "ingest_logs_job", "quality_gates_job", "judge_runs_job"):
        defs.resolve_job_def(job)
    for sensor in ("daily_aggregates_sensor", "quality_alerts_sensor", "judge_new_runs_sensor"):
        assert defs.resolve_sensor_def(sensor).default_status == dg.DefaultSensorStatus.RUNNING
    gates = {
        "daily_usage_unpriced_runs_share",
        "daily_usage_cost_spike",
        "daily_eval_summary_pass_rate_drop",
        "daily_eval_summary_eval_coverage",
        "log_files_recent_parse_failures",
        "judge_verdicts_judge_agreement",
    }
    # The ingest run rebuilds its days and judges them: its one asset step, then the gates, in one process.
    ingest = defs.resolve_job_def("ingest_logs_job")
    assert set(ingest.graph.node_dict) == {"ingest_logs", *gates}
    assert set(defs.resolve_job_def("quality_gates_job").graph.node_dict) == gates
    # Runs over ranges of days never carry the gates (Dagster would show a SKIPPED plan per partition).
    for job in ("reprice_logs", "reevaluate_logs", "daily_aggregates_job", "judge_runs_job"):
        assert not set(defs.resolve_job_def(job).graph.node_dict) & gates, job
    for job in ("ingest_logs_job", "quality_gates_job", "daily_aggregates_job", "judge_runs_job"):
        assert defs.resolve_job_def(job).executor_def.name == "in_process", job


def dagster_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dagster", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.e2e  # runs the dagster command line twice
def test_cli_validates_and_backfills_a_partition_range_in_one_run(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    database = Database(url)
    database.ensure_schema()
    store_days(database, date(2026, 1, 4), 5, 5)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DATABASE_URL": url, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}

    validated = dagster_cli("definitions", "validate", "-m", "llm_monitoring.definitions", env=env, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    materialized = dagster_cli(
        "asset",
        "materialize",
        "-m",
        "llm_monitoring.definitions",
        "--select",
        "daily_usage",
        "--partition-range",
        "2026-01-05...2026-01-07",
        env=env,
        cwd=tmp_path,
    )
    assert materialized.returncode == 0, materialized.stdout + materialized.stderr

    days = sorted({row.day for row in select(database, sa.select(daily_usage.c.day))})
    assert days == [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    database.dispose()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs_count() == 1


def test_deployment_dagster_yaml_keeps_runs_in_postgres(tmp_path: Path, postgres_url: str, monkeypatch):
    shutil.copy(REPO / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    url = sa.make_url(postgres_url)
    for key, value in {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_PG_PORT": str(url.port or 5432),
    }.items():
        monkeypatch.setenv(key, value)

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.get_ref().storage).__name__ == "DagsterPostgresStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert dg.materialize([probe], instance=instance).success
        assert instance.get_runs_count() == 1


def test_local_dagster_yaml_keeps_runs_in_sqlite_beside_the_project(tmp_path: Path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # dagster dev's processes share the project folder as working directory

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.get_ref().storage).__name__ == "DagsterSqliteStorage"
        assert dg.materialize([probe], instance=instance).success
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert list((tmp_path / ".dagster_home" / "storage").rglob("*.db"))  # runs and events kept across restarts
