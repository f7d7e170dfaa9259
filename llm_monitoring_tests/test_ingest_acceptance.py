"""The promise for any file: 300 good logs and one poison file of every class, through the real runner, twice."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_monitoring.ingest import content_hash
from llm_monitoring.samples import write_sample_logs
from llm_monitoring_tests.poison import assert_outcome, file_contents, write_poison

ROOT = Path(__file__).resolve().parents[1]
MAX_LOG_BYTES = 200_000


def runner_command() -> tuple[list[str], bool]:
    """The runner's command line, and whether it can read files it has no permission for.

    Tests run as root here, and root reads a chmod 000 file. Without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (dropped with setpriv) it cannot, as any other user, so the unreadable file
    really fails in the read stage."""
    command = [sys.executable, "-m", "llm_monitoring.runner"]
    if os.geteuid() != 0:
        return command, False
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command, True
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command], False


def run_runner(command: list[str], env: dict[str, str]) -> str:
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout + process.stderr
    return process.stdout


@pytest.mark.parametrize("database_kind", ["sqlite", "postgres"])
def test_runner_twice_stores_every_good_log_and_stores_or_quarantines_every_poison_file(
    database_kind: str, logs_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
):
    url = request.getfixturevalue("postgres_url" if database_kind == "postgres" else "sqlite_url")
    good = {content_hash(path.read_bytes()) for path in write_sample_logs(logs_dir, 300, seed=33, sizes_kb=(5, 30))}
    outside = tmp_path / "outside"
    outside.mkdir()
    command, bypasses = runner_command()
    poisons = write_poison(
        logs_dir,
        postgres=database_kind == "postgres",
        reader_bypasses_permissions=bypasses,
        outside=outside,
        max_log_bytes=MAX_LOG_BYTES,
    )
    (logs_dir / "a-folder.json").mkdir()  # not a file: left alone, never pending
    (logs_dir / "a-folder.json" / "inside.json").write_bytes(b"{}")
    before = file_contents(logs_dir)
    env = {**os.environ, "LOGS_DIR": str(logs_dir), "DATABASE_URL": url, "SETTLE_SECONDS": "0", "MAX_LOG_BYTES": str(MAX_LOG_BYTES)}
    env.pop("DAGSTER_HOME", None)
    env.pop("INGEST_WORKERS", None)  # the default: one worker per core

    first = run_runner(command, env)
    second = run_runner(command, env)

    stored = sum(poison.expect == "stored" for poison in poisons)
    assert f"{len(good) + len(poisons)} files: {len(good) + stored} stored" in first, first
    assert f"{len(poisons) - stored} quarantined" in first, first
    assert second.strip().startswith("0 files: 0 stored"), second
    assert_outcome(url, logs_dir, good, poisons, before)
    assert (logs_dir / "a-folder.json" / "inside.json").read_bytes() == b"{}"
