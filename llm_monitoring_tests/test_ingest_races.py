"""No loss under races: files replaced mid-pass, a runner killed with its workers, a writer still writing."""

import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from llm_monitoring.ingest import content_hash
from llm_monitoring.runner import run_ingest, watch
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import llm_logs, processed_files
from llm_monitoring_tests.poison import log_bytes
from llm_monitoring_tests.test_faults import (
    assert_exactly_once,
    finish,
    runner_env,
    start_runner,
    stored_counts,
    wait_for_stored,
    write_logs,
)


def stored_hashes(url: str) -> list[str]:
    database = Database(url)
    try:
        with database.connect() as connection:
            if not sa.inspect(connection).has_table("llm_logs"):
                return []
            return list(connection.scalars(sa.select(llm_logs.c.content_hash)))
    finally:
        database.dispose()


def processed_names(url: str) -> set[str]:
    database = Database(url)
    with database.connect() as connection:
        names = set(connection.scalars(sa.select(processed_files.c.processed_as)))
    database.dispose()
    return names


def test_files_replaced_during_a_pass_are_stored_or_left_pending_never_lost(env, logs_dir: Path, database_url: str, monkeypatch):
    monkeypatch.setenv("INGEST_BATCH_FILES", "4")
    monkeypatch.setenv("INGEST_WORKERS", "2")
    names = [f"run{index:03d}.json" for index in range(300)]
    old = time.time() - 600
    first = {name: log_bytes(f"{name}-v1") for name in names}
    second = {name: log_bytes(f"{name}-v2") for name in names}
    for name in names:
        (logs_dir / name).write_bytes(first[name])
        os.utime(logs_dir / name, (old, old))

    def replace_all() -> None:
        # Each name gets a second version, atomically, at a random moment of the pass (also after its move).
        # Waits for the first moved file by looking at the folder, not the database: a thread inside
        # SQLite while the ingest forks its workers would leave them a locked SQLite mutex.
        deadline = time.monotonic() + 60
        while not any(path.name.startswith("_") for path in logs_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        rng = random.Random(8)
        for name in rng.sample(names, len(names)):
            temporary = logs_dir / f".{name}.tmp"
            temporary.write_bytes(second[name])
            os.utime(temporary, (old, old))
            os.replace(temporary, logs_dir / name)
            time.sleep(rng.uniform(0, 0.01))

    writer = threading.Thread(target=replace_all)
    writer.start()
    run_ingest()
    writer.join()

    hashes = stored_hashes(database_url)
    assert len(hashes) == len(set(hashes))  # no content stored twice
    versions = {content_hash(raw): name for name, raw in first.items()} | {content_hash(raw): name for name, raw in second.items()}
    assert set(hashes) <= set(versions)
    # the invariant the race could break: every file marked processed holds content that is stored
    done = processed_names(database_url)
    for path in logs_dir.iterdir():
        if path.name in done:
            assert content_hash(path.read_bytes()) in hashes, f"{path.name} marked processed but its content is not stored"
    # every second version is stored or still pending under a pending name
    pending = {content_hash(path.read_bytes()) for path in logs_dir.iterdir() if path.is_file() and path.name not in done}
    for name, raw in second.items():
        assert content_hash(raw) in set(hashes) | pending, f"the second version of {name} is lost"
    replaced_before_read = sum(content_hash(raw) not in hashes for raw in first.values())

    run_ingest()  # the next pass stores what was left pending, each version once
    hashes = stored_hashes(database_url)
    assert len(hashes) == len(set(hashes))
    assert {content_hash(raw) for raw in second.values()} <= set(hashes)
    assert len(hashes) == 2 * len(names) - replaced_before_read
    assert not [path.name for path in logs_dir.iterdir() if path.is_file() and path.name not in processed_names(database_url)]


def session_processes(session: int) -> list[int]:
    """Processes of a session (the runner was started as its leader), read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_sigkill_of_the_runner_leaves_no_worker_and_no_connection(logs_dir: Path, postgres_url: str):
    originals = write_logs(logs_dir, 600)
    marker = f"llmmon_orphans_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}?application_name={marker}"
    runner = start_runner(runner_env(logs_dir, url, INGEST_WORKERS="2", INGEST_BATCH_FILES="4"))
    wait_for_stored(runner, postgres_url, 20, interval=0.05)
    assert len(session_processes(runner.pid)) >= 3  # the runner and its two workers, mid-pass
    os.kill(runner.pid, signal.SIGKILL)  # the runner alone, as the OOM killer would
    runner.wait()
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 15
        left, connections = session_processes(runner.pid), -1
        while time.monotonic() < deadline:
            left = session_processes(runner.pid)
            with admin.connect() as connection:
                connections = connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %(name)s", {"name": marker}
                ).scalar()
            if not left and connections == 0:
                break
            time.sleep(0.2)
    finally:
        admin.dispose()
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [] and connections == 0, f"alive after 15 s: processes {left}, {connections} connections"
    assert 0 < stored_counts(postgres_url)[0] < 600
    finish(start_runner(runner_env(logs_dir, postgres_url)))
    assert_exactly_once(postgres_url, logs_dir, originals)


def test_watch_takes_a_file_being_rewritten_only_once_it_settles(env, logs_dir: Path, database_url: str, monkeypatch):
    # A writer that rewrites complete snapshots of its log: each snapshot parses, but only the last
    # one is the run. Other, settled files arriving meanwhile make the watcher start passes.
    monkeypatch.setenv("SETTLE_SECONDS", "1.5")
    snapshots = [json.dumps({**json.loads(log_bytes("snapshot")), "step": step}).encode() for step in range(12)]
    others = []

    def write() -> None:
        for step, snapshot in enumerate(snapshots):
            temporary = logs_dir / ".snapshot.tmp"
            temporary.write_bytes(snapshot)
            os.replace(temporary, logs_dir / "snapshot.json")
            if step % 2:
                other = logs_dir / f"other{step}.json"
                other.write_bytes(log_bytes(f"other{step}"))
                settled = time.time() - 60
                os.utime(other, (settled, settled))
                others.append(other.name)
            time.sleep(0.3)

    writer = threading.Thread(target=write)
    writer.start()
    watch(0.2, stop_after=3.6 + 1.5 + 4)
    writer.join()
    hashes = stored_hashes(database_url)
    assert content_hash(snapshots[-1]) in hashes
    assert not {content_hash(snapshot) for snapshot in snapshots[:-1]} & set(hashes)  # one row for the run
    assert len(hashes) == 1 + len(others)
