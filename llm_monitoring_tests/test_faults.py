"""Exactly-once ingest under real damage: SIGKILL mid-batch, two runners at once, a cut connection."""

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from llm_monitoring.ingest import content_hash
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import eval_checks, llm_logs

ROOT = Path(__file__).resolve().parents[1]
FILES = 400


def runner_env(logs_dir: Path, url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LOGS_DIR": str(logs_dir), "DATABASE_URL": url, "SETTLE_SECONDS": "0", "INGEST_BATCH_FILES": "4"}
    env.pop("DAGSTER_HOME", None)
    env.update(extra)
    return env


def start_runner(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llm_monitoring.runner", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output.decode()
    return output.decode()


def write_logs(logs_dir: Path, count: int = FILES) -> dict[str, bytes]:
    """The sample logs with their bytes, keyed by content hash."""
    paths = write_sample_logs(logs_dir, count, seed=11, sizes_kb=(5, 12))
    return {content_hash(path.read_bytes()): path.read_bytes() for path in paths}


def assert_exactly_once(url: str, logs_dir: Path, originals: dict[str, bytes]) -> None:
    database = Database(url)
    with database.connect() as connection:
        hashes = list(connection.scalars(sa.select(llm_logs.c.content_hash)))
        per_log = connection.execute(sa.select(eval_checks.c.log_id, sa.func.count()).group_by(eval_checks.c.log_id)).all()
        orphans = connection.scalar(
            sa.select(sa.func.count())
            .select_from(llm_logs.outerjoin(eval_checks, eval_checks.c.log_id == llm_logs.c.id))
            .where(eval_checks.c.id.is_(None))
        )
    database.dispose()
    assert len(hashes) == len(set(hashes)) == len(originals)  # every run stored, none twice
    assert set(hashes) == set(originals)
    assert orphans == 0 and all(count == 7 for _, count in per_log)  # no run without its full set of checks
    on_disk = {content_hash(path.read_bytes()) for path in logs_dir.rglob("*.json")}
    assert on_disk == set(originals)  # every file's bytes still there
    assert not [path for path in logs_dir.glob("*.json") if not path.name.startswith("_")]  # none left pending


def count_stored(database: Database) -> tuple[int, int]:
    """(runs, checks) stored so far."""
    with database.connect() as connection:
        if not sa.inspect(connection).has_table("eval_checks"):
            return 0, 0
        logs = connection.scalar(sa.select(sa.func.count()).select_from(llm_logs))
        checks = connection.scalar(sa.select(sa.func.count()).select_from(eval_checks))
        return logs, checks


def stored_counts(url: str) -> tuple[int, int]:
    database = Database(url)
    try:
        return count_stored(database)
    finally:
        database.dispose()


def wait_for_stored(process: subprocess.Popen, url: str, at_least: int, interval: float = 0.02) -> None:
    """Poll until `at_least` runs are stored (or the process ended, or two minutes passed). One
    connection for all the polls: opening one per poll would take CPU from the process under test."""
    database = Database(url)
    try:
        deadline = time.monotonic() + 120
        while count_stored(database)[0] < at_least and process.poll() is None and time.monotonic() < deadline:
            time.sleep(interval)
    finally:
        database.dispose()


def kill_after_progress(process: subprocess.Popen, url: str, at_least: int, rng: random.Random) -> None:
    """SIGKILL the runner's process group once `at_least` runs are stored, at a random moment after."""
    wait_for_stored(process, url, at_least)
    time.sleep(rng.uniform(0.0, 0.15))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("seed", [1, 2])
def test_runner_killed_mid_batch_leaves_no_partial_state(seed: int, logs_dir: Path, postgres_url: str):
    originals = write_logs(logs_dir)
    env = runner_env(logs_dir, postgres_url)
    rng = random.Random(seed)
    killed_at = []
    for round_ in range(2):
        process = start_runner(env)
        kill_after_progress(process, postgres_url, rng.randint(1, 40) + 60 * round_, rng)
        logs, checks = stored_counts(postgres_url)
        killed_at.append(logs)
        assert checks == 7 * logs  # never a run without its full set of checks
    assert 0 < killed_at[0] < FILES  # the kill really came mid-run
    finish(start_runner(env))
    assert_exactly_once(postgres_url, logs_dir, originals)


def test_runner_killed_on_sqlite_recovers_too(logs_dir: Path, sqlite_url: str):
    # small batches of many files: SQLite commits fast, and the kill must land mid-run
    originals = write_logs(logs_dir, 600)
    env = runner_env(logs_dir, sqlite_url, INGEST_BATCH_FILES="3")
    process = start_runner(env)
    kill_after_progress(process, sqlite_url, 20, random.Random(5))
    logs, checks = stored_counts(sqlite_url)
    assert 0 < logs < 600 and checks == 7 * logs
    finish(start_runner(env))
    assert_exactly_once(sqlite_url, logs_dir, originals)


def test_ctrl_c_during_a_watch_pass_stops_the_watcher(logs_dir: Path, sqlite_url: str):
    # Dagster takes over SIGINT while it runs a job; the watcher must still stop, not retry forever.
    originals = write_logs(logs_dir, 600)
    env = runner_env(logs_dir, sqlite_url, INGEST_BATCH_FILES="2", POLL_SECONDS="0.2")
    process = start_runner(env, "--watch")
    wait_for_stored(process, sqlite_url, 10)
    assert stored_counts(sqlite_url)[0] < 600  # the pass is still running
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode()
    assert "stopped" in output.decode() and "retrying in" not in output.decode()
    logs, checks = stored_counts(sqlite_url)
    assert checks == 7 * logs
    finish(start_runner(env))  # what the interrupted pass left is ingested once by the next one
    assert_exactly_once(sqlite_url, logs_dir, originals)


@pytest.mark.parametrize("database_kind", ["postgres", "sqlite"])
def test_two_runners_on_one_folder_store_each_run_once(database_kind: str, logs_dir: Path, request: pytest.FixtureRequest):
    url = request.getfixturevalue("postgres_url" if database_kind == "postgres" else "sqlite_url")
    originals = write_logs(logs_dir)
    env = runner_env(logs_dir, url)
    first, second = start_runner(env), start_runner(env)
    finish(first)
    finish(second)
    finish(start_runner(env))  # whatever one runner found gone, the other stored: nothing is left
    assert_exactly_once(url, logs_dir, originals)


def test_cut_postgres_connection_is_retried_and_nothing_is_lost(logs_dir: Path, postgres_url: str):
    originals = write_logs(logs_dir)
    marker = f"llmmon_fault_test_{uuid.uuid4().hex[:8]}"  # this test's connections only, whatever else runs
    url = f"{postgres_url}?application_name={marker}"
    process = start_runner(runner_env(logs_dir, url))
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    terminated = 0
    deadline = time.monotonic() + 120
    try:
        while terminated < 2 and time.monotonic() < deadline and process.poll() is None:
            with admin.connect() as connection:
                stored = (
                    connection.exec_driver_sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'llm_logs'").scalar()
                    and connection.exec_driver_sql("SELECT count(*) FROM llm_logs").scalar()
                )
                if stored and stored >= 16 * (terminated + 1):
                    terminated += (
                        connection.exec_driver_sql(
                            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %(marker)s) AS killed",
                            {"marker": marker},
                        ).scalar()
                        and 1
                    )
            time.sleep(0.05)
    finally:
        admin.dispose()
    output = finish(process)
    assert terminated >= 1, output
    assert_exactly_once(postgres_url, logs_dir, originals)


def test_watch_backs_off_while_the_database_is_down_and_recovers(logs_dir: Path, postgres_server: str):
    from llm_monitoring_tests.conftest import drop_postgres_database

    name = f"llmmon_test_watch_{uuid.uuid4().hex[:12]}"
    url = sa.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    write_sample_logs(logs_dir, 5, seed=3)
    process = start_runner(runner_env(logs_dir, url, POLL_SECONDS="0.5"), "--watch")
    lines: list[str] = []
    try:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        while sum("retrying in" in line for line in lines) < 2 and time.monotonic() < deadline:
            if selector.select(timeout=1):
                lines.append(process.stdout.readline().decode())
        failures = [line for line in lines if "retrying in" in line]
        assert len(failures) == 2, "".join(lines)
        assert f"/{name} is unavailable" in failures[0]
        delays = [float(line.rsplit("retrying in ", 1)[1].split("s")[0]) for line in failures]
        assert delays[1] > delays[0]  # backs off instead of spinning
        assert len(list(logs_dir.glob("_*.json"))) == 0  # files stay in place
        engine = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        deadline = time.monotonic() + 90
        while len(list(logs_dir.glob("_*.json"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(list(logs_dir.glob("_*.json"))) == 5  # recovered once the database came back
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0  # Ctrl-C stops cleanly
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        drop_postgres_database(postgres_server, name)
