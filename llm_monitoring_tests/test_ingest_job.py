"""The ingest job end to end on real instances and databases, and the sensor that triggers it."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.defs.ingest.assets import logs_metadata
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.defs.keys import ingest_run_config
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.ingest import IngestReport
from llm_monitoring.runner import IngestFailed, run_ingest
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import eval_checks, ingest_errors, llm_logs
from llm_monitoring_tests.conftest import FIXTURES, REAL_LOGS


def sensor_resources(logs_dir: Path) -> dict:
    # the ledger of processed names lives in the database: a throwaway SQLite file beside the logs
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{logs_dir.parent / 'sensor.db'}"
    return {"log_source": LogSourceResource(logs_dir=str(logs_dir)), "database": DatabaseResource(url=url)}


def copy_fixtures(logs_dir: Path) -> list[str]:
    names = sorted(path.name for path in FIXTURES.glob("*.json"))
    for name in names:
        shutil.copy(FIXTURES / name, logs_dir / name)
    return names


def counts(url: str) -> tuple[int, int, int]:
    database = Database(url)
    try:
        return count_rows(database, llm_logs), count_rows(database, eval_checks), count_rows(database, ingest_errors)
    finally:
        database.dispose()


def test_job_stores_priced_runs_with_seven_checks_and_marks_files(env, logs_dir: Path, database_url: str):
    names = copy_fixtures(logs_dir)
    (logs_dir / "broken.json").write_bytes(b'{"messages": [')
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == len(names)
    assert outcome.metadata["quarantined"] == 1
    assert counts(database_url) == (len(names), 7 * len(names), 1)
    assert sorted(p.name for p in logs_dir.glob("*.json")) == sorted("_" + n for n in names)
    assert (logs_dir / "_quarantine" / "broken.json").read_bytes() == b'{"messages": ['
    database = Database(database_url)
    with database.connect() as connection:
        error = connection.execute(sa.select(ingest_errors)).one()
    database.dispose()
    assert "truncated JSON" in error.error
    assert error.quarantined_as.endswith(os.path.join("_quarantine", "broken.json"))


def test_same_content_under_two_names_is_stored_once(env, logs_dir: Path, database_url: str):
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "a.json")
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "b.json")
    run_ingest()
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "c.json")
    outcome = run_ingest()
    assert outcome.metadata["already_stored"] == 1
    assert counts(database_url)[:2] == (1, 7)
    assert sorted(p.name for p in logs_dir.iterdir() if p.is_file()) == ["_a.json", "_b.json", "_c.json"]


def test_second_run_over_the_same_files_adds_nothing(env, logs_dir: Path, database_url: str):
    copy_fixtures(logs_dir)
    run_ingest()
    for path in logs_dir.glob("_*.json"):
        path.rename(logs_dir / path.name[1:])  # put the same content back under its first name
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == 0
    assert counts(database_url)[0] == len(list(FIXTURES.glob("*.json")))


def test_empty_processed_prefix_moves_files_to_a_folder(env, monkeypatch, logs_dir: Path):
    monkeypatch.setenv("PROCESSED_PREFIX", "")
    copy_fixtures(logs_dir)
    run_ingest()
    assert not list(logs_dir.glob("*.json"))
    assert len(list((logs_dir / "_processed").glob("*.json"))) == len(list(FIXTURES.glob("*.json")))
    assert run_ingest().metadata["files_seen"] == 0


def test_database_outage_fails_with_one_clear_line_and_leaves_files(monkeypatch, logs_dir: Path, tmp_path: Path):
    monkeypatch.setenv("LOGS_DIR", str(logs_dir))
    monkeypatch.setenv("DATABASE_URL", "postgresql://monitor:hunter2@127.0.0.1:9/monitoring")
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    copy_fixtures(logs_dir)
    with pytest.raises(IngestFailed) as error:
        run_ingest()
    message = str(error.value)
    assert "127.0.0.1:9/monitoring" in message and "unavailable" in message
    assert "hunter2" not in message and "\n" not in message
    assert len(list(logs_dir.glob("[!_]*.json"))) == len(list(FIXTURES.glob("*.json")))


def test_sensor_requests_settled_files_in_batches(monkeypatch, logs_dir: Path):
    monkeypatch.setenv("INGEST_RUN_FILES", "10")
    # Settled files are an hour old, the fresh one seconds old: a wide margin, as a loaded machine can take
    # seconds between writing it and the sensor listing it.
    monkeypatch.setenv("SETTLE_SECONDS", "60")
    write_sample_logs(logs_dir, 25)
    old = time.time() - 3600
    for path in logs_dir.iterdir():
        os.utime(path, (old, old))
    (logs_dir / "being_written.json").write_text("{")  # fresh: still being written
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir))
        result = new_log_files_sensor(context)
    assert [len(request.run_config["ops"]["ingest_logs"]["config"]["files"]) for request in result.run_requests] == [10, 10, 5]
    requested = {name for request in result.run_requests for name in request.run_config["ops"]["ingest_logs"]["config"]["files"]}
    assert "being_written.json" not in requested and len(requested) == 25
    assert len({request.run_key for request in result.run_requests}) == 3
    assert result.cursor == "1"


def test_sensor_skips_files_already_in_a_running_ingest_run(monkeypatch, logs_dir: Path):
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    write_sample_logs(logs_dir, 3)
    names = sorted(path.name for path in logs_dir.iterdir())
    from llm_monitoring.definitions import defs

    job = defs.resolve_job_def("ingest_logs_job")
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(
            job_def=job,
            run_config=ingest_run_config(names[:2]),
            tags={"dagster/sensor_name": "new_log_files_sensor"},
            status=dg.DagsterRunStatus.STARTED,
        )
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir))
        result = new_log_files_sensor(context)
        files = [name for request in result.run_requests for name in request.run_config["ops"]["ingest_logs"]["config"]["files"]]
        assert files == [names[2]]
        # nothing left: a skip with a reason
        (logs_dir / names[2]).unlink()
        skipped = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir)))
        assert "no new settled log files" in skipped.skip_message


def test_sensor_run_request_executes_the_job(env, logs_dir: Path, database_url: str):
    copy_fixtures(logs_dir)
    from llm_monitoring.definitions import defs

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir))
        request = new_log_files_sensor(context).run_requests[0]
        result = defs.resolve_job_def("ingest_logs_job").execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance
        )
        assert result.success
        materialized: dict[str, set] = {}
        for event in result.get_asset_materialization_events():
            materialized.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
        # The run also rebuilt the daily aggregates of exactly the days it stored runs of, and judged them.
        database = Database(database_url)
        with database.connect() as connection:
            days = {moment.date().isoformat() for moment in connection.scalars(sa.select(llm_logs.c.run_started_at))}
        database.dispose()
        assert materialized == {"llm_logs": {None}, "eval_checks": {None}, "daily_usage": days, "daily_eval_summary": days}
        assert {evaluation.asset_check_key.name for evaluation in result.get_asset_check_evaluations()} == {
            "unpriced_runs_share",
            "cost_spike",
            "pass_rate_drop",
            "eval_coverage",
            "recent_parse_failures",
            "judge_agreement",
        }
    assert counts(database_url)[0] == len(list(FIXTURES.glob("*.json")))


def test_definitions_load_with_lineage():
    from llm_monitoring.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("llm_logs")).parent_keys == {dg.AssetKey("log_files")}
    assert dg.AssetKey("llm_logs") in graph.get(dg.AssetKey("eval_checks")).parent_keys
    sensor = defs.resolve_sensor_def("new_log_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="the public real-log collection is not beside the project")
def test_real_logs_are_stored_once_and_truncated_ones_quarantined(env, logs_dir: Path, database_url: str):
    valid = sorted((REAL_LOGS / "valid").glob("*.json"))
    invalid = sorted((REAL_LOGS / "invalid").glob("*.json"))
    for path in valid + invalid:
        shutil.copy(path, logs_dir / path.name)
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == len(valid)
    assert outcome.metadata["quarantined"] == len(invalid)
    for path in invalid:
        assert (logs_dir / "_quarantine" / path.name).read_bytes() == path.read_bytes()
    database = Database(database_url)
    with database.connect() as connection:
        rows = connection.execute(
            sa.select(llm_logs.c.filepath, llm_logs.c.total_input_tokens, llm_logs.c.pricing_status, llm_logs.c.total_cost)
        ).all()
    database.dispose()
    assert len(rows) == len(valid)
    for row in rows:
        assert (row.total_cost is None) == (not row.pricing_status.startswith("priced"))
    priced = [row for row in rows if row.total_cost is not None]
    assert len(priced) >= len(valid) - 5
    for path in valid:
        shutil.copy(path, logs_dir / path.name)
    assert run_ingest().metadata["runs_stored"] == 0
    assert counts(database_url)[0] == len(valid)


def test_sensor_on_a_database_without_tables_lists_prefix_named_files(logs_dir: Path, postgres_url: str):
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "_search_20251103_144350_8459d5.json")
    old = time.time() - 60
    os.utime(logs_dir / "_search_20251103_144350_8459d5.json", (old, old))
    resources = {"log_source": LogSourceResource(logs_dir=str(logs_dir)), "database": DatabaseResource(url=postgres_url)}
    with dg.instance_for_test() as instance:
        result = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert result.run_requests[0].run_config["ops"]["ingest_logs"]["config"]["files"] == ["_search_20251103_144350_8459d5.json"]


def test_report_keeps_stored_ids_ascending_whatever_order_batches_commit_in():
    # Workers commit concurrently: the id range in the metadata must still span every stored run.
    total = IngestReport()
    for ids in ([7, 8], [3, 4], [5, 6]):
        total.add(IngestReport(stored=len(ids), stored_ids=ids))
    assert total.stored_ids == [3, 4, 5, 6, 7, 8]
    metadata = logs_metadata(total, "logs")
    assert (metadata["first_new_id"], metadata["last_new_id"]) == (3, 8)
