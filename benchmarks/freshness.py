"""Freshness under `dagster dev`: seconds from logs landing in LOGS_DIR to rows, daily aggregates, gates and an alert.

    uv run python benchmarks/freshness.py [--rounds 3] [--logs DIR]

Each round starts `dagster dev` as a new user would (default settings, SQLite, the project's
dagster.yaml in its own DAGSTER_HOME in a temporary folder, a free port on 127.0.0.1), with a local
HTTP receiver as ALERT_WEBHOOK_URL; waits until every sensor has ticked once; then copies the logs
into the folder and polls every 0.2 s. Logs: the public real logs in ../shared/reallogs/valid/
beside the project (read in place, never copied into it), else 55 logs written by
llm_monitoring/samples.py over 34 days, three of them of a model genai-prices does not know.

Prints, per round, seconds from the drop to: every run in llm_logs; daily_usage complete (its runs
add up to the stored runs); daily_eval_summary complete; the last gate evaluation of the runs that
followed; the first alert of a failing gate at the receiver. Then the Dagster runs with their
creation, start and end times, which show where the time goes. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_monitoring.core.wording import plural  # noqa: E402
from llm_monitoring.samples import PROFILES, make_run_log  # noqa: E402
from llm_monitoring_tests.history_data import unknown_model  # noqa: E402
from llm_monitoring_tests.processes import WebhookReceiver, free_port, graphql, stop_group, wait_until  # noqa: E402

REAL_LOGS = ROOT.parent / "shared" / "reallogs" / "valid"
TIMEOUT_SECONDS = 300
LOCATION = "llm_monitoring"
SENSORS = ("new_log_files_sensor", "daily_aggregates_sensor", "quality_alerts_sensor")

SENSOR_TICKS = """query($name: String!) { sensorOrError(sensorSelector: {repositoryName: "__repository__",
  repositoryLocationName: "LOCATION", sensorName: $name}) { ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }""".replace(
    "LOCATION", LOCATION
)
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status creationTime startTime endTime
  tags { key value } } } } }"""
CHECK_EVENTS = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on MessageEvent { timestamp } } } } }"""


def sample_logs(folder: Path) -> list[Path]:
    """55 logs over 34 days, three of them (on two days) of a model genai-prices does not know."""
    folder.mkdir(parents=True)
    rng = random.Random(7)
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    paths = []
    for index in range(55):
        started = start + timedelta(days=index * 34 // 55, minutes=13 * index)
        profile = PROFILES[index % len(PROFILES)]
        log = make_run_log(rng, started, profile=profile)
        if index in (10, 11, 40):
            unknown_model(log)
        path = folder / f"{profile.agent_name}_{started:%Y%m%d_%H%M%S}_{index:03d}.json"
        path.write_text(json.dumps(log), encoding="utf-8")
        paths.append(path)
    return paths


@dataclass
class Round:
    rows: float | None = None
    daily_usage: float | None = None
    daily_eval_summary: float | None = None
    gates: float | None = None
    alert: float | None = None
    alerts: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)


def counts(engine: sa.Engine) -> tuple[int, int, int, int, int]:
    """(runs stored, dated runs, daily_usage runs, dated check rows, daily_eval_summary rows counted)."""
    queries = (
        "SELECT count(*) FROM llm_logs",
        "SELECT count(*) FROM llm_logs WHERE run_started_at IS NOT NULL",
        "SELECT coalesce(sum(runs), 0) FROM daily_usage",
        "SELECT count(*) FROM eval_checks e JOIN llm_logs l ON l.id = e.log_id WHERE l.run_started_at IS NOT NULL",
        "SELECT coalesce(sum(runs), 0) FROM daily_eval_summary",
    )
    try:
        with engine.connect() as connection:
            return tuple(int(connection.execute(sa.text(query)).scalar_one()) for query in queries)  # type: ignore[return-value]
    except sa.exc.OperationalError:  # tables not created yet
        return (0, 0, 0, 0, 0)


def runs_of(port: int) -> list[dict[str, Any]]:
    return graphql(port, RUNS)["data"]["runsOrError"]["results"]


def check_evaluations(port: int, run_id: str) -> list[float]:
    """Times (epoch seconds) of the run's asset check evaluations."""
    events = graphql(port, CHECK_EVENTS, variables={"runId": run_id})["data"]["logsForRun"]["events"]
    return [int(event["timestamp"]) / 1000 for event in events if event["__typename"] == "AssetCheckEvaluationEvent"]


def one_round(logs: list[Path], work: Path) -> Round:
    with WebhookReceiver() as receiver:
        return measure(logs, work, receiver)


def measure(logs: list[Path], work: Path, receiver: WebhookReceiver) -> Round:
    home, folder = work / "dagster_home", work / "logs"
    home.mkdir()
    folder.mkdir()
    # The project's instance settings, with Dagster's storage in this round's own folder.
    instance_yaml = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    instance_yaml["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    port = free_port()
    database_url = f"sqlite:///{work / 'monitoring.db'}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LOGS_DIR": str(folder),
        "DATABASE_URL": database_url,
        "ALERT_WEBHOOK_URL": receiver.url,
        "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("DAGSTER_PG_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    engine = sa.create_engine(database_url)
    result = Round()
    try:

        def server_up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    return True
            except OSError:
                return False

        wait_until(server_up, 180, "the webserver", interval=0.5)

        def sensors_ticked() -> bool:
            for name in SENSORS:
                sensor = graphql(port, SENSOR_TICKS, variables={"name": name})["data"]["sensorOrError"]
                if not sensor.get("sensorState", {}).get("ticks"):
                    return False
            return True

        wait_until(sensors_ticked, 180, "a first tick of every sensor", interval=0.5)
        time.sleep(1)  # the first ticks' runs (none on an empty folder) and their writes settle

        dropped = time.time()
        for path in logs:
            shutil.copy(path, folder / path.name)
        deadline = dropped + TIMEOUT_SECONDS
        while time.time() < deadline:
            now = time.time() - dropped
            stored, dated, usage_runs, check_rows, summary_rows = counts(engine)
            if result.rows is None and stored >= len(logs):
                result.rows = now
            if result.rows is not None and result.daily_usage is None and usage_runs == dated:
                result.daily_usage = now
            if result.rows is not None and result.daily_eval_summary is None and summary_rows == check_rows:
                result.daily_eval_summary = now
            gate_alerts = [at for at, body in list(receiver.received) if body.get("kind") == "quality_gate"]
            if gate_alerts and result.alert is None:
                result.alert = min(gate_alerts) - dropped
            if result.daily_usage is not None and result.daily_eval_summary is not None:
                runs = runs_of(port)
                idle = all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in runs)
                if idle and (result.alert is not None or now > (result.daily_usage + 60)):
                    break
            time.sleep(0.2)
        time.sleep(3)  # a repeated alert would arrive on the next tick
        result.alerts = len(receiver.bodies("quality_gate"))
        result.runs = sorted(runs_of(port), key=lambda run: run["creationTime"])
        evaluated = [stamp for run in result.runs for stamp in check_evaluations(port, run["runId"])]
        if evaluated:
            result.gates = max(evaluated) - dropped
        for run in result.runs:
            for key in ("creationTime", "startTime", "endTime"):
                run[key] = None if run[key] is None else run[key] - dropped
        return result
    finally:
        stop_group(process, grace=20)
        engine.dispose()


def show(value: float | None) -> str:
    return "-" if value is None else f"{value:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--logs", type=Path, default=None, help="folder of logs to drop (default: the real logs, else samples)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="freshness_") as temp:
        if args.logs:
            logs, origin = sorted(args.logs.glob("*.json")), str(args.logs)
        elif REAL_LOGS.is_dir():
            logs, origin = sorted(REAL_LOGS.glob("*.json")), "the public real logs"
        else:
            logs, origin = sample_logs(Path(temp) / "samples"), "samples.py logs"
        print(f"{len(logs)} logs ({origin}), {args.rounds} rounds, {os.cpu_count()} cores")
        rounds = []
        for number in range(args.rounds):
            work = Path(temp) / f"round{number}"
            work.mkdir()
            result = one_round(logs, work)
            rounds.append(result)
            print(
                f"round {number + 1}: rows {show(result.rows)} s, daily_usage {show(result.daily_usage)} s, "
                f"daily_eval_summary {show(result.daily_eval_summary)} s, gates {show(result.gates)} s, "
                f"first gate alert {show(result.alert)} s ({plural(result.alerts, 'gate alert')})"
            )
            for run in result.runs:
                tags = {tag["key"]: tag["value"] for tag in run["tags"]}
                span = tags.get("dagster/asset_partition_range_start")
                span = f" {span}..{tags.get('dagster/asset_partition_range_end')}" if span else f" {tags.get('dagster/partition', '')}"
                print(
                    f"    {run['jobName']:<22} {run['status']:<8} created {show(run['creationTime'])}  "
                    f"started {show(run['startTime'])}  ended {show(run['endTime'])}{span}"
                )
        if len(rounds) > 1:
            for name in ("rows", "daily_usage", "daily_eval_summary", "gates", "alert"):
                values = [getattr(r, name) for r in rounds if getattr(r, name) is not None]
                if values:
                    print(f"median {name}: {statistics.median(values):.1f} s")


if __name__ == "__main__":
    main()
