"""`dagster dev` end to end: the sensor ingests dropped files; the UI's GraphQL shows runs, lineage and the
gates' truth; failed gates reach a local webhook once per gate and day."""

import os
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llm_monitoring.defs.keys import ALERTS_SENSOR
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import llm_logs
from llm_monitoring_tests.history_data import unknown_model, write_logs
from llm_monitoring_tests.processes import WebhookReceiver, free_port, graphql, stop_group, wait_until

ROOT = Path(__file__).resolve().parents[1]


SENSOR_RUNS = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "new_log_files_sensor"}]}) {
  ... on Runs { results { runId status jobName } } } }"""
LINEAGE = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def test_dagster_dev_sensor_ingests_dropped_files_and_ui_shows_runs_and_lineage(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
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
    with dagster_dev_process(project, env) as port:
        write_sample_logs(logs, 6, seed=21)  # dropped in while Dagster runs: no other action

        def finished_run():
            runs = graphql(port, SENSOR_RUNS)["data"]["runsOrError"]["results"]
            return [run for run in runs if run["status"] in ("SUCCESS", "FAILURE")]

        runs = wait_until(finished_run, 180, "a sensor-triggered ingest run", interval=0.5)
        assert runs[0]["status"] == "SUCCESS" and runs[0]["jobName"] == "ingest_logs_job"
        database = Database(url)
        assert count_rows(database, llm_logs) == 6
        database.dispose()
        assert len(list(logs.glob("_*.json"))) == 6
        edges = {
            "/".join(node["assetKey"]["path"]): {"/".join(dep["path"]) for dep in node["dependencyKeys"]}
            for node in graphql(port, LINEAGE)["data"]["assetNodes"]
        }
        assert edges["llm_logs"] == {"log_files"}
        assert "llm_logs" in edges["eval_checks"]
        assert (project / ".dagster_home" / "storage").is_dir()  # runs kept beside the project, no Postgres


@contextmanager
def dagster_dev(tmp_path: Path, env: dict[str, str]) -> Iterator[int]:
    """`dagster dev` on a free port with its own DAGSTER_HOME (the project's dagster.yaml); yields the port."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    env.pop("DAGSTER_PG_HOST", None)
    with dagster_dev_process(tmp_path, env, "-m", "llm_monitoring.definitions") as port:
        yield port


@contextmanager
def dagster_dev_process(cwd: Path, env: dict[str, str], *args: str) -> Iterator[int]:
    """`dagster dev [ARGS]` in `cwd` on a free port, in its own process group; yields the port once the
    webserver answers, and stops the whole group afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", *args, "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        env={**env, "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def server_up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    return True
            except OSError:
                return False

        wait_until(server_up, 120, "the webserver", interval=0.25)
        yield port
    finally:
        stop_group(process, grace=20)


CHECK_HISTORY = """query($check: String!) { assetCheckExecutions(assetKey: {path: ["daily_usage"]}, checkName: $check, limit: 50) {
  runId status partition evaluation { description metadataEntries { label ... on TextMetadataEntry { text } } } } }"""
CHECK_STATUS = """{ assetNodes(assetKeys: [{path: ["daily_usage"]}]) { assetChecksOrError { ... on AssetChecks {
  checks { name executionForLatestMaterialization { status } } } } } }"""
MARCH = datetime(2025, 3, 3, 9, tzinfo=UTC)  # far from today: the look-back judges none of these days


ALERT_TICKS = """query($after: Float!) { repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name
  sensorState { ticks(afterTimestamp: $after, statuses: [SKIPPED, SUCCESS, FAILURE]) { timestamp } } } } } } }"""


def day(offset: int) -> datetime:
    return MARCH + timedelta(days=offset)


def wait_for_alert_ticks(port: int, after: float, count: int = 2) -> None:
    """Wait until the alerts sensor has finished `count` ticks that started after `after` (a time.time())."""

    def finished_ticks() -> bool:
        nodes = graphql(port, ALERT_TICKS, variables={"after": after})["data"]["repositoriesOrError"]["nodes"]
        ticks = [
            tick
            for node in nodes
            for sensor in node["sensors"]
            if sensor["name"] == ALERTS_SENSOR
            for tick in sensor["sensorState"]["ticks"]
        ]
        return len(ticks) >= count

    wait_until(finished_ticks, 120, f"{count} more ticks of the alerts sensor", interval=0.5)


def test_dagster_dev_alerts_each_failing_gate_and_day_once_and_the_ui_shows_the_gate_failed(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        WebhookReceiver() as receiver,
        dagster_dev(
            tmp_path,
            {
                "LOGS_DIR": str(logs),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'monitoring.db'}",
                "SETTLE_SECONDS": "1",
                "ALERT_WEBHOOK_URL": receiver.url,
            },
        ) as port,
    ):
        # One ingest: unpriced runs on the first of three days (the last day, judged too, passes),
        # and a truncated file.
        write_logs(logs, 3, seed=1, start=day(0), prefix="a")
        write_logs(logs, 2, seed=2, start=day(0), mutate=unknown_model, prefix="b")
        write_logs(logs, 3, seed=3, start=day(1), prefix="c")
        write_logs(logs, 3, seed=4, start=day(2), prefix="d")
        (logs / "broken.json").write_text('{"messages": [{"kind": "request", "parts": [')

        def alerts(count: int):
            return lambda: len(receiver.received) >= count and receiver.bodies()

        wait_until(alerts(2), 180, "the first two alerts", interval=0.5)
        wait_for_alert_ticks(port, after=receiver.received[-1][0])  # two more ticks: nothing is sent again
        gate_alerts, quarantine = receiver.bodies("quality_gate"), receiver.bodies("quarantine")
        assert len(receiver.received) == 2 and len(gate_alerts) == 1 and len(quarantine) == 1
        assert (gate_alerts[0]["gate"], gate_alerts[0]["asset"], gate_alerts[0]["failing_days"]) == (
            "unpriced_runs_share",
            "daily_usage",
            ["2025-03-03"],
        )
        assert "unpriced_runs_share" in gate_alerts[0]["text"] and "2025-03-03" in gate_alerts[0]["text"]
        assert gate_alerts[0]["run_url"] == f"http://127.0.0.1:{port}/runs/{gate_alerts[0]['run_id']}"
        assert quarantine[0]["gate"] == "recent_parse_failures" and quarantine[0]["files"][0].endswith("broken.json")

        # A second ingest: the first day fails again (already alerted) and a new day fails.
        write_logs(logs, 1, seed=5, start=day(0) + timedelta(hours=5), mutate=unknown_model, prefix="e")
        write_logs(logs, 2, seed=6, start=day(3), prefix="f")
        write_logs(logs, 1, seed=7, start=day(3) + timedelta(hours=3), mutate=unknown_model, prefix="g")
        wait_until(alerts(3), 180, "the alert of the new day", interval=0.5)
        wait_for_alert_ticks(port, after=receiver.received[-1][0])
        assert len(receiver.received) == 3
        assert receiver.bodies("quality_gate")[1]["failing_days"] == ["2025-03-06"]
        sent = Counter((body["gate"], key) for body in receiver.bodies() for key in body["alert_keys"])
        assert set(sent.values()) == {1}  # exactly one alert per gate and day (or file)

        # What the UI shows: the latest evaluation failed, naming every failing day it judged; one
        # evaluation per ingest run and no SKIPPED entries.
        history = graphql(port, CHECK_HISTORY, variables={"check": "unpriced_runs_share"})["data"]["assetCheckExecutions"]
        assert [execution["status"] for execution in history] == ["FAILED", "FAILED"]
        assert {execution["partition"] for execution in history} == {None}
        latest = {entry["label"]: entry.get("text") for entry in history[0]["evaluation"]["metadataEntries"]}
        assert latest["failing_days"] == "2025-03-03, 2025-03-06"
        assert history[0]["evaluation"]["description"].startswith("over 5% of runs unpriced on 2 days: 2025-03-03, 2025-03-06")
        first = {entry["label"]: entry.get("text") for entry in history[1]["evaluation"]["metadataEntries"]}
        assert first["failing_days"] == "2025-03-03"  # while 2025-03-05, judged in the same evaluation, passed
        checks = graphql(port, CHECK_STATUS)["data"]["assetNodes"][0]["assetChecksOrError"]["checks"]
        status = {check["name"]: (check["executionForLatestMaterialization"] or {}).get("status") for check in checks}
        assert status == {"unpriced_runs_share": "FAILED", "cost_spike": "SUCCEEDED"}
