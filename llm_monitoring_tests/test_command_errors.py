"""What a user sees when a command cannot do its work: one line saying what and why, never a
traceback, with any password masked; and the run's full record kept in the Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llm_monitoring.cli import main as cli_main
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.samples import write_sample_logs
from llm_monitoring_tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Zq7kP:Wx9mR"  # ':' inside: the password is the whole of it, not what follows the first ':'


def run_command(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SETTLE_SECONDS": "0", **env}
    full_env.pop("DEBUG", None)
    full_env.pop("MONITORING_DEBUG", None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_one_line(stderr: str, starts_with: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(starts_with), stderr
    assert "Traceback" not in stderr and "Zq7kP" not in stderr and "Wx9mR" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("command", "prefix"),
    [(["-m", "llm_monitoring.runner"], "ingest failed: "), (["-m", "llm_monitoring", "ingest"], "ingest failed: ")],
)
def test_ingest_on_a_database_outage_prints_one_line_and_keeps_the_run_record(
    tmp_path: Path, logs_dir: Path, command: list[str], prefix: str
) -> None:
    write_sample_logs(logs_dir, 3)
    before = sorted(path.name for path in logs_dir.iterdir())
    port = free_port()  # nothing listens there: connection refused
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        "DATABASE_URL": f"postgresql://monitor:{PASSWORD}@127.0.0.1:{port}/monitoring",
        "LOGS_DIR": str(logs_dir),
        "DAGSTER_HOME": str(home),
    }
    result = run_command(command, env)
    assert result.returncode == 1
    line = assert_one_line(result.stderr, prefix)
    assert line.startswith(f"{prefix}database postgresql+psycopg://monitor:***@127.0.0.1:{port}/monitoring is unavailable: ")
    assert "Connection refused" in line
    assert sorted(path.name for path in logs_dir.iterdir()) == before  # the files wait for the retry
    # The console kept quiet, the instance did not: the failed run and its step's error are recorded.
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
        failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        recorded = failures[0].event_log_entry.dagster_event.event_specific_data.error
        assert "is unavailable" in recorded.to_string() and "Zq7kP" not in recorded.to_string()
    finally:
        instance.dispose()


@pytest.mark.parametrize(
    ("logs_dir_value", "reason"),
    [
        ("{tmp}/no_such_folder", "does not exist"),
        ("{tmp}/a_file.json", "is not a folder"),
        ("s3://monitor:Zq7kPWx9mR@bucket/agent-logs", "holds credentials; give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ("gs://bucket/agent-logs", "is a gs:// URL; logs are read from a local folder or an S3-compatible bucket"),
    ],
)
def test_an_unusable_logs_dir_fails_the_ingest_in_one_line(
    tmp_path: Path,
    sqlite_url: str,
    logs_dir_value: str,
    reason: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a_file.json").write_text("{}")
    logs_dir = logs_dir_value.format(tmp=tmp_path)
    result = run_command(["-m", "llm_monitoring.runner"], {"DATABASE_URL": sqlite_url, "LOGS_DIR": logs_dir})
    assert result.returncode == 1 and result.stdout == ""
    line = assert_one_line(result.stderr, "ingest failed: LOGS_DIR ")
    assert reason in line and "0 files" not in result.stdout
    # The same from the command line, in-process: ingest, watch and retry-quarantined refuse alike.
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LOGS_DIR", logs_dir)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for args in (["ingest"], ["watch"], ["retry-quarantined"]):
        assert cli_main(args) == 1, args
        captured = capsys.readouterr()
        assert reason in assert_one_line(captured.err, "")
    assert not Path(logs_dir).is_dir()  # never created behind the user's back


def test_demo_creates_a_missing_logs_dir(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    logs_dir = tmp_path / "new" / "logs"
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LOGS_DIR", str(logs_dir))
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli_main(["demo", "--count", "2"]) == 0
    assert "2 files: 2 stored" in capsys.readouterr().out
    assert len(list(logs_dir.glob("_*.json"))) == 2


@pytest.mark.parametrize(
    ("logs_dir_value", "reason"),
    [("{tmp}/no_such_folder", "does not exist"), ("gs://bucket/agent-logs", "is a gs:// URL")],
)
def test_sensor_skips_an_unusable_logs_dir_with_the_reason(tmp_path: Path, logs_dir_value: str, reason: str) -> None:
    resources = {
        "log_source": LogSourceResource(logs_dir=logs_dir_value.format(tmp=tmp_path)),
        "database": DatabaseResource(url=f"sqlite:///{tmp_path / 'sensor.db'}"),
    }
    with dg.instance_for_test() as instance:
        result = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("not listing log files: LOGS_DIR ") and reason in result.skip_message


def test_sensor_skips_a_malformed_database_url_with_the_reason(tmp_path: Path, logs_dir: Path) -> None:
    resources = {
        "log_source": LogSourceResource(logs_dir=str(logs_dir)),
        "database": DatabaseResource(url="postgresql://monitor:Zq7kP@Wx9mR@127.0.0.1/monitoring"),
    }
    with dg.instance_for_test() as instance:
        result = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SkipReason)
    assert "is not usable" in result.skip_message and "Zq7kP" not in result.skip_message


BAD_URLS = {
    "unencoded @": "postgresql://monitor:Zq7kP@Wx9mR@127.0.0.1:{port}/monitoring",
    "port not a number": "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:port/monitoring",
    "no URL": "Zq7kPWx9mR-not-a-url",
}
UNREACHABLE_URL = "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:{port}/monitoring"
COMMANDS = {
    "summary": ["summary"],
    "feedback list": ["feedback", "list"],
    "feedback": ["feedback", "1", "--good"],
    "feedback import": ["feedback", "import", "{tmp}/feedback.csv"],
    "ingest": ["ingest"],
    "watch": ["watch"],
    "demo": ["demo", "--count", "1"],
    "retry-quarantined": ["retry-quarantined"],
}
# The watcher waits for an unreachable database to come back (test_faults covers it); a URL that can
# never work stops it at once.
CASES = [(command, url) for command in COMMANDS for url in BAD_URLS] + [
    (command, "unreachable") for command in COMMANDS if command != "watch"
]


@pytest.mark.parametrize(("command", "url"), CASES)
def test_commands_on_a_bad_or_unreachable_database_print_one_line(
    tmp_path: Path,
    logs_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    url: str,
) -> None:
    args = COMMANDS[command]
    url = BAD_URLS.get(url, UNREACHABLE_URL)
    (tmp_path / "feedback.csv").write_text("log_id,is_good\n1,yes\n")
    (logs_dir / "_quarantine").mkdir()
    (logs_dir / "_quarantine" / "broken.json").write_text("{")
    monkeypatch.setenv("DATABASE_URL", url.format(port=free_port()))
    monkeypatch.setenv("LOGS_DIR", str(logs_dir))
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli_main([arg.format(tmp=tmp_path) for arg in args]) == 1
    captured = capsys.readouterr()
    line = assert_one_line(captured.err, "ingest failed: " if args == ["ingest"] else "")
    assert "is not usable" in line or "is unavailable" in line
    assert "Zq7kP" not in captured.out and "Wx9mR" not in captured.out
    assert (logs_dir / "_quarantine" / "broken.json").exists()  # not put back while its error cannot be resolved


def test_fake_data_on_a_malformed_database_url_prints_one_line(tmp_path: Path) -> None:
    result = run_command(
        ["-m", "llm_monitoring.fake_data", "--count", "2"],
        {"DATABASE_URL": "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:port/monitoring"},
    )
    assert result.returncode == 1
    assert "is not usable" in assert_one_line(result.stderr, "error: database URL ")


def test_a_setting_that_is_not_a_number_is_one_line(sqlite_url: str, logs_dir: Path) -> None:
    result = run_command(
        ["-m", "llm_monitoring", "ingest"],
        {"DATABASE_URL": sqlite_url, "LOGS_DIR": str(logs_dir), "INGEST_WORKERS": "four"},
    )
    assert result.returncode == 1
    assert assert_one_line(result.stderr, "error: ") == "error: INGEST_WORKERS must be a number, got 'four'"
