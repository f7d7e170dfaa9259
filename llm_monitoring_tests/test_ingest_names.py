"""Any name the OS lists is ingested; processed names fit; moves stay inside LOGS_DIR and are never repeated."""

import os
import re
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.cli import main as cli_main
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.file_names import NAME_MAX_BYTES, name_text
from llm_monitoring.runner import IngestFailed, run_ingest
from llm_monitoring.sources import LocalDirectorySource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.ledger import open_ingest_errors
from llm_monitoring.storage.schema import llm_logs, processed_files
from llm_monitoring_tests.poison import file_contents, log_bytes
from llm_monitoring_tests.test_ingest_job import sensor_resources

ODD_NAMES = [b"run-\xff\xfe.json", b"n" * 250 + b".json", ("\u00e9" * 125 + ".json").encode(), b"line\nbreak.json", b"back\\xff.json"]


def write_named(folder: Path, names: list[bytes]) -> None:
    old = time.time() - 60
    for index, name in enumerate(names):
        path = os.path.join(os.fsencode(folder), name)
        with open(path, "wb") as handle:
            handle.write(log_bytes(f"name{index}"))
        os.utime(path, (old, old))


def names_in(folder: Path) -> list[bytes]:
    return sorted(name for name in os.listdir(os.fsencode(folder)) if os.path.isfile(os.path.join(os.fsencode(folder), name)))


def stored(url: str) -> list[sa.Row]:
    database = Database(url)
    with database.connect() as connection:
        rows = connection.execute(sa.select(llm_logs.c.filepath, llm_logs.c.content_hash)).all()
    database.dispose()
    return rows


def test_sensor_and_job_take_names_that_are_not_utf8_or_at_the_length_limit(env, logs_dir: Path, database_url: str):
    write_named(logs_dir, ODD_NAMES)
    from llm_monitoring.definitions import defs

    with dg.instance_for_test() as instance:
        result = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir)))
        (request,) = result.run_requests
        files = request.run_config["ops"]["ingest_logs"]["config"]["files"]
        assert sorted(files) == sorted(name_text(os.fsdecode(name)) for name in ODD_NAMES)
        run = defs.resolve_job_def("ingest_logs_job").execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance
        )
        assert run.success
        # processed names are known to the next tick, whatever their bytes
        skipped = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources(logs_dir)))
        assert "no new settled log files" in skipped.skip_message
    paths = {row.filepath for row in stored(database_url)}
    assert paths == {name_text(os.path.join(str(logs_dir), os.fsdecode(name))) for name in ODD_NAMES}
    processed = names_in(logs_dir)
    assert len(processed) == len(ODD_NAMES)
    assert all(name.startswith(b"_") and len(name) <= NAME_MAX_BYTES for name in processed)
    assert b"_run-\xff\xfe.json" in processed and b"_line\nbreak.json" in processed
    assert run_ingest().metadata["files_seen"] == 0


def test_a_file_moved_but_not_recorded_is_never_renamed_again(env, logs_dir: Path, database_url: str):
    write_named(logs_dir, [b"a.json"])
    run_ingest()
    assert names_in(logs_dir) == [b"_a.json"]
    database = Database(database_url)
    with database.transaction() as connection:  # what a crash between the rename and its record leaves
        connection.execute(sa.delete(processed_files))
    database.dispose()
    outcome = run_ingest()
    assert (outcome.metadata["files_seen"], outcome.metadata["already_stored"]) == (1, 1)
    assert names_in(logs_dir) == [b"_a.json"]  # not "__a.json"
    assert run_ingest().metadata["files_seen"] == 0


def test_a_move_that_fails_after_the_commit_is_reported_and_done_once_later(env, logs_dir: Path, database_url: str, monkeypatch):
    monkeypatch.setenv("PROCESSED_DIR", "_done")
    (logs_dir / "_done").write_text("a file where the processed folder should be")
    write_named(logs_dir, [b"a.json", b"b.json"])
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == 2 and outcome.metadata["left_in_place"] == 2
    assert "left in place" in outcome.line()
    assert names_in(logs_dir) == [b"_done", b"a.json", b"b.json"]
    (logs_dir / "_done").unlink()
    outcome = run_ingest()
    assert outcome.metadata["already_stored"] == 2 and outcome.metadata["left_in_place"] == 0
    assert names_in(logs_dir / "_done") == [b"a.json", b"b.json"]
    assert len(stored(database_url)) == 2


def test_a_name_collision_under_the_processed_folder_keeps_both_files(env, logs_dir: Path, monkeypatch):
    monkeypatch.setenv("PROCESSED_DIR", "_done")
    (logs_dir / "_done").mkdir()
    (logs_dir / "_done" / "run.json").write_bytes(b"an earlier file of that name")
    long_name = "r" * 250 + ".json"
    (logs_dir / "_done" / long_name).write_bytes(b"an earlier long one")
    write_named(logs_dir, [b"run.json", long_name.encode()])
    run_ingest()
    done = names_in(logs_dir / "_done")
    assert len(done) == 4 and all(len(name) <= NAME_MAX_BYTES for name in done)
    assert (logs_dir / "_done" / "run.json").read_bytes() == b"an earlier file of that name"
    assert (logs_dir / "_done" / "run.1.json").read_bytes() == log_bytes("name0")
    assert (logs_dir / "_done" / long_name).read_bytes() == b"an earlier long one"


def test_files_are_never_moved_through_a_symlink_out_of_the_log_folder(env, logs_dir: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (logs_dir / "_quarantine").symlink_to(outside)
    (logs_dir / "broken.json").write_bytes(b'{"messages": [')
    os.utime(logs_dir / "broken.json", (time.time() - 60,) * 2)
    outcome = run_ingest()
    assert outcome.metadata["quarantined"] == 0 and outcome.metadata["left_in_place"] == 1
    assert list(outside.iterdir()) == [] and (logs_dir / "broken.json").exists()


def test_processed_and_quarantine_folders_outside_the_log_folder_are_refused(env, logs_dir: Path, monkeypatch):
    for setting, value in (("PROCESSED_DIR", "../elsewhere"), ("QUARANTINE_DIR", "/tmp")):
        with pytest.raises(ValueError, match=f"{setting} must be a folder inside LOGS_DIR"):
            LocalDirectorySource(logs_dir, **{setting.lower(): value})
        monkeypatch.setenv(setting, value)
        write_named(logs_dir, [b"a.json"])
        with pytest.raises(IngestFailed, match=f"{setting} must be a folder inside LOGS_DIR"):
            run_ingest()
        monkeypatch.delenv(setting)
    assert names_in(logs_dir) == [b"a.json"]


def test_ingest_command_refuses_files_outside_the_log_folder_and_changes_nothing(env, logs_dir: Path, tmp_path: Path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"not a log, not ours")
    (outside / "run.json").write_bytes(log_bytes("outside"))
    (logs_dir / "link.json").symlink_to(outside / "run.json")
    before = {path.name: path.read_bytes() for path in outside.iterdir()}
    monkeypatch.chdir(logs_dir)
    for argument in (
        str(outside / "file"),
        "../outside/file",
        "../outside/run.json",
        str(outside / "run.json"),
        "..",
        "sub/../../outside/file",
    ):
        assert cli_main(["ingest", argument]) == 2, argument
        error = capsys.readouterr().err
        assert error.startswith("error: refusing") and ("not a file directly in the log folder" in error or "not a file name" in error), (
            error
        )
    # the job's own config refuses them too (reachable from the launchpad)
    with pytest.raises(IngestFailed, match=re.escape("refusing '../outside/file'")):
        run_ingest(["../outside/file"])
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == before
    assert sorted(path.name for path in logs_dir.iterdir()) == ["link.json"]
    # a symlink named on the command line is quarantined as what it is, never followed
    assert cli_main(["ingest", "link.json"]) == 0
    assert "1 quarantined" in capsys.readouterr().out
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == before
    # a path into the folder, from anywhere, is fine
    write_named(logs_dir, [b"good.json"])
    monkeypatch.chdir(tmp_path)
    assert cli_main(["ingest", str(logs_dir / "good.json")]) == 0
    assert "1 stored" in capsys.readouterr().out
    assert file_contents(outside) and (logs_dir / "_good.json").exists()


def test_retry_quarantined_puts_back_entries_that_cannot_be_read(env, logs_dir: Path, database_url: str, tmp_path: Path, capsys):
    os.mkfifo(logs_dir / "fifo.json")
    (tmp_path / "target.json").write_bytes(log_bytes("target"))
    (logs_dir / "link.json").symlink_to(tmp_path / "target.json")
    assert run_ingest().metadata["quarantined"] == 2
    database = Database(database_url)
    assert len(open_ingest_errors(database)) == 2
    assert cli_main(["retry-quarantined"]) == 0
    assert "2 quarantined files put back" in capsys.readouterr().out
    assert (logs_dir / "fifo.json").is_fifo() and (logs_dir / "link.json").is_symlink()
    assert open_ingest_errors(database) == []  # keyed the same way when put back as when quarantined
    database.dispose()


def test_a_folder_named_on_the_command_line_is_left_alone_with_the_reason(env, logs_dir: Path, capsys):
    (logs_dir / "folder.json").mkdir()
    assert cli_main(["ingest", "folder.json"]) == 0
    assert "1 left in place" in capsys.readouterr().out
    assert (logs_dir / "folder.json").is_dir()
