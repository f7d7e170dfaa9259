"""Bad input is quarantined with a stored reason and its bytes kept; odd names are not skipped."""

import os
import shutil
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from llm_monitoring.cli import main as cli_main
from llm_monitoring.runner import run_ingest
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.ledger import open_ingest_errors
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import ingest_errors, llm_logs
from llm_monitoring_tests.conftest import FIXTURES

BAD_FILES = {
    "empty.json": (b"", "empty file"),
    "latin1.json": ('{"messages": [], "agent_name": "caf\xe9"}'.encode("latin-1"), "not valid UTF-8"),
    "array.json": (b"[1, 2]", "a JSON array whose first element is a number: not a run log"),
    "truncated.json": (b'{"agent_name": "a", "messages": [{"parts": [', "truncated JSON"),
    "foreign.json": (b'{"question": "q", "answer": "a", "timestamp": "2025-01-01"}', "no 'messages' list"),
}


def errors(url: str) -> dict[str, str]:
    database = Database(url)
    with database.connect() as connection:
        rows = connection.execute(sa.select(ingest_errors.c.filepath, ingest_errors.c.error, ingest_errors.c.occurrences)).all()
    database.dispose()
    return {Path(row.filepath).name: (row.error, row.occurrences) for row in rows}


def age(path: Path, seconds: float = 600) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def test_every_kind_of_bad_file_is_quarantined_with_its_reason(env, logs_dir: Path, database_url: str, monkeypatch):
    monkeypatch.setenv("MAX_LOG_BYTES", "4000")
    for name, (raw, _) in BAD_FILES.items():
        (logs_dir / name).write_bytes(raw)
    big = (FIXTURES / "streamed_structured_output.json").read_bytes()
    assert len(big) > 4000
    (logs_dir / "too_big.json").write_bytes(big)
    outcome = run_ingest()
    assert outcome.metadata["quarantined"] == len(BAD_FILES) + 1
    assert outcome.metadata["runs_stored"] == 0
    stored_errors = errors(database_url)
    for name, (raw, reason) in BAD_FILES.items():
        assert reason in stored_errors[name][0]
        assert (logs_dir / "_quarantine" / name).read_bytes() == raw
    assert "over MAX_LOG_BYTES=4000" in stored_errors["too_big.json"][0]
    assert (logs_dir / "_quarantine" / "too_big.json").read_bytes() == big
    # quarantined files are not retried on every poll
    assert run_ingest().metadata["files_seen"] == 0


def test_retry_quarantined_puts_files_back_once_the_cause_is_fixed(env, logs_dir: Path, database_url: str, monkeypatch, capsys):
    monkeypatch.setenv("MAX_LOG_BYTES", "4000")
    shutil.copy(FIXTURES / "streamed_structured_output.json", logs_dir / "big.json")
    (logs_dir / "truncated.json").write_bytes(b'{"messages": [')
    run_ingest()
    assert sorted(errors(database_url)) == ["big.json", "truncated.json"]
    monkeypatch.setenv("MAX_LOG_BYTES", str(50 * 1024 * 1024))  # the cause is fixed for one of them
    assert cli_main(["retry-quarantined", "--ingest"]) == 0
    output = capsys.readouterr().out
    assert "2 quarantined files put back" in output
    assert (logs_dir / "_big.json").exists()
    assert (logs_dir / "_quarantine" / "truncated.json").exists()
    assert errors(database_url)["truncated.json"] == (errors(database_url)["truncated.json"][0], 2)
    database = Database(database_url)
    open_errors = {Path(row["filepath"]).name for row in open_ingest_errors(database)}
    database.dispose()
    assert open_errors == {"truncated.json"}  # the fixed one is resolved, the one failing again re-opened
    database = Database(database_url)
    assert count_rows(database, llm_logs) == 1
    database.dispose()


def test_valid_log_with_nul_character_is_stored(env, logs_dir: Path, database_url: str):
    raw = (FIXTURES / "string_output_naive_time.json").read_bytes().replace(b"SEC filings.", b"SEC\\u0000 filings.")
    (logs_dir / "nul.json").write_bytes(raw)
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == 1 and outcome.metadata["quarantined"] == 0


def test_unsettled_broken_file_is_left_alone_until_it_settles(env, logs_dir: Path, database_url: str, monkeypatch):
    monkeypatch.setenv("SETTLE_SECONDS", "300")
    (logs_dir / "being_written.json").write_bytes(b'{"messages": [')
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "fresh_but_complete.json")
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == 1  # a fresh file that parses is ingested at once
    assert outcome.metadata["still_being_written"] == 1
    assert (logs_dir / "being_written.json").exists() and not errors(database_url)
    age(logs_dir / "being_written.json")
    assert run_ingest().metadata["quarantined"] == 1


def test_upper_case_extension_and_prefix_named_new_files_are_ingested(env, logs_dir: Path, database_url: str):
    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "RUN.JSON")
    # agents named "_search" write files that start with the processed prefix
    shutil.copy(FIXTURES / "streamed_structured_output.json", logs_dir / "_search_20251103_144350_8459d5.json")
    shutil.copy(FIXTURES / "unknown_model.json", logs_dir / "notes.txt")
    assert run_ingest().metadata["runs_stored"] == 2
    names = {path.name for path in logs_dir.iterdir() if path.is_file()}
    assert names == {"__search_20251103_144350_8459d5.json", "_RUN.JSON", "notes.txt"}
    # processed files (recorded under their new names) are not read again
    assert run_ingest().metadata["files_seen"] == 0


@pytest.mark.e2e  # the watcher polls for seconds
def test_watch_picks_up_a_prefix_named_new_file(env, logs_dir: Path, database_url: str):
    from llm_monitoring.runner import watch

    shutil.copy(FIXTURES / "gemini_thinking.json", logs_dir / "_search_20251103_144350_8459d5.json")
    watch(0.2, stop_after=6)
    assert (logs_dir / "__search_20251103_144350_8459d5.json").exists()
    database = Database(database_url)
    assert count_rows(database, llm_logs) == 1
    database.dispose()
