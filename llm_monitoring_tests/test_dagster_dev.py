"""`dagster dev` end to end: the sensor ingests dropped files; the UI's GraphQL shows runs and lineage."""

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path


from llm_monitoring.db import Database, llm_logs
from llm_monitoring.samples import write_sample_logs
from llm_monitoring_tests.processes import free_port, graphql, stop_group, wait_until

ROOT = Path(__file__).resolve().parents[1]


SENSOR_RUNS = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "new_log_files_sensor"}]}) {
  ... on Runs { results { runId status jobName } } } }"""
LINEAGE = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def test_dagster_dev_sensor_ingests_dropped_files_and_ui_shows_runs_and_lineage(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    port = free_port()
    # exactly the README's `uv run dagster dev`: no DAGSTER_HOME, no Postgres, the repo's dagster.yaml;
    # batches of 2 files, so the sensor's run stores them in worker processes forked by its step process
    env = {**os.environ, "LOGS_DIR": str(logs), "DATABASE_URL": url, "SETTLE_SECONDS": "1", "INGEST_BATCH_FILES": "2"}
    for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST"):
        env.pop(key, None)
    # a copy of the project's top-level Dagster files, so the local .dagster_home it creates is the test's
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(ROOT / name, project / name)
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        def server_up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    return True
            except OSError:
                return False

        wait_until(server_up, 120, "the webserver", interval=1)
        write_sample_logs(logs, 6, seed=21)  # dropped in while Dagster runs: no other action

        def finished_run():
            runs = graphql(port, SENSOR_RUNS)["data"]["runsOrError"]["results"]
            return [run for run in runs if run["status"] in ("SUCCESS", "FAILURE")]

        runs = wait_until(finished_run, 180, "a sensor-triggered ingest run", interval=1)
        assert runs[0]["status"] == "SUCCESS" and runs[0]["jobName"] == "ingest_logs_job"
        database = Database(url)
        assert database.count(llm_logs) == 6
        database.dispose()
        assert len(list(logs.glob("_*.json"))) == 6
        edges = {
            "/".join(node["assetKey"]["path"]): {"/".join(dep["path"]) for dep in node["dependencyKeys"]}
            for node in graphql(port, LINEAGE)["data"]["assetNodes"]
        }
        assert edges["llm_logs"] == {"log_files"}
        assert "llm_logs" in edges["eval_checks"]
        assert (project / ".dagster_home" / "storage").is_dir()  # runs kept beside the project, no Postgres
    finally:
        stop_group(process, grace=20)
