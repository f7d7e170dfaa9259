"""The ingest over files holding several runs: JSON Lines read in place by byte offset, arrays, per-run failures."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pytest
import sqlalchemy as sa

from llm_monitoring.config import get_settings
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.ingest import ingest_files
from llm_monitoring.samples import make_run_log
from llm_monitoring.sources import LocalDirectorySource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import file_offsets, ingest_errors, llm_logs

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def run_line(seed: int) -> bytes:
    log = make_run_log(random.Random(seed), START + timedelta(minutes=seed), size_kb=2)
    return orjson.dumps(log) + b"\n"


def ingest(logs_dir: Path, database: Database, **options: object):
    return ingest_files(LocalDirectorySource(logs_dir, glob=get_settings().log_file_glob), database, **options)


def stored(database: Database) -> int:
    return count_rows(database, llm_logs)


@pytest.fixture
def settled_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_SECONDS", "0")


def test_jsonl_is_read_in_place_and_an_appended_line_adds_exactly_one_run(settled_now, logs_dir: Path, database: Database):
    path = logs_dir / "agent.jsonl"
    path.write_bytes(run_line(1) + run_line(2) + run_line(3))
    assert ingest(logs_dir, database).stored == 3
    assert path.exists(), "a file an agent appends to stays where it is"
    again = ingest(logs_dir, database)
    assert (again.files_seen, again.stored, stored(database)) == (0, 0, 3), "an unchanged file is not even read"
    with path.open("ab") as handle:
        handle.write(run_line(4))
    report = ingest(logs_dir, database)
    assert (report.stored, report.already_stored, stored(database)) == (1, 0, 4)
    with database.connect() as connection:
        offset = connection.execute(sa.select(file_offsets)).one()
    assert (offset.bytes_read, offset.lines_read, offset.size) == (path.stat().st_size, 4, path.stat().st_size)


def test_a_last_line_without_newline_waits_until_the_file_settles(monkeypatch: pytest.MonkeyPatch, logs_dir: Path, database: Database):
    monkeypatch.setenv("SETTLE_SECONDS", "3600")
    path = logs_dir / "agent.jsonl"
    partial_line = run_line(2).rstrip(b"\n")
    path.write_bytes(run_line(1) + partial_line[:200])
    report = ingest(logs_dir, database, settled_only=True)
    assert (report.stored, report.failed_runs, report.quarantined) == (1, 0, 0), "complete lines count at once"
    with path.open("ab") as handle:
        handle.write(partial_line[200:])
    assert ingest(logs_dir, database, settled_only=True).stored == 0, "a complete value without newline may still grow"
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    assert ingest(logs_dir, database).stored == 1, "once the file settles, its last line is read"
    assert stored(database) == 2


def test_a_truncated_or_rotated_file_is_read_again_without_duplicates(settled_now, logs_dir: Path, database: Database):
    path = logs_dir / "agent.jsonl"
    path.write_bytes(run_line(1) + run_line(2))
    assert ingest(logs_dir, database).stored == 2
    path.write_bytes(run_line(1))  # truncated: shorter than what was read
    report = ingest(logs_dir, database)
    assert (report.stored, report.already_stored) == (0, 1)
    rotated = logs_dir / "agent.jsonl.tmp"
    rotated.write_bytes(run_line(1) + run_line(2) + run_line(3))
    os.replace(rotated, path)  # a new file under the same name, same first lines
    report = ingest(logs_dir, database)
    assert (report.stored, report.already_stored, stored(database)) == (1, 2, 3)
    path.write_bytes(run_line(5) + run_line(2) + run_line(3))  # rewritten in place, same length class
    assert ingest(logs_dir, database).stored == 1
    assert stored(database) == 4


def test_a_bad_line_is_recorded_with_its_line_and_the_rest_is_stored(settled_now, logs_dir: Path, database: Database):
    path = logs_dir / "agent.jsonl"
    path.write_bytes(run_line(1) + b'{"messages": "oops"}\n' + b"not json at all\n" + run_line(2))
    report = ingest(logs_dir, database)
    assert (report.stored, report.failed_runs, report.quarantined) == (2, 2, 0)
    with database.connect() as connection:
        errors = connection.execute(sa.select(ingest_errors.c.filepath, ingest_errors.c.error).order_by(ingest_errors.c.id)).all()
    assert [error.filepath.rsplit("/", 1)[-1] for error in errors] == ["agent.jsonl (line 2)", "agent.jsonl (line 3)"]
    assert all(error.error for error in errors)
    assert path.exists()
    assert ingest(logs_dir, database).files_seen == 0, "bad lines are recorded once, never retried forever"


def test_jsonl_and_per_run_files_in_one_folder(settled_now, logs_dir: Path, database: Database):
    (logs_dir / "one.json").write_bytes(run_line(1))
    (logs_dir / "many.ndjson").write_bytes(run_line(2) + run_line(3))
    (logs_dir / "same_run_again.jsonl").write_bytes(run_line(2))
    report = ingest(logs_dir, database)
    assert (report.stored, report.already_stored, stored(database)) == (3, 1, 3)
    assert not (logs_dir / "one.json").exists() and (logs_dir / "_one.json").exists()


def test_sensor_requests_appended_files_without_waiting_and_skips_unchanged_ones(
    monkeypatch: pytest.MonkeyPatch, logs_dir: Path, tmp_path: Path
):
    monkeypatch.setenv("SETTLE_SECONDS", "3600")
    url = f"sqlite:///{tmp_path / 'sensor.db'}"
    resources = {"log_source": LogSourceResource(logs_dir=str(logs_dir)), "database": DatabaseResource(url=url)}
    (logs_dir / "agent.jsonl").write_bytes(run_line(1))
    (logs_dir / "fresh.json").write_bytes(run_line(2))
    with dg.instance_for_test() as instance:
        result = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        requested = [name for request in result.run_requests for name in request.run_config["ops"]["ingest_logs"]["config"]["files"]]
        assert requested == ["agent.jsonl"], "a fresh per-run file waits; complete lines are final"
        database = Database(url)
        database.ensure_schema()
        try:
            ingest(logs_dir, database, names=requested, settled_only=True)
            again = new_log_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert isinstance(again, dg.SkipReason), "nothing new in the appended file"
        finally:
            database.dispose()


# ------------------------------------------------------------------ every format, made by the real writers


@pytest.fixture(scope="module")
def writers():
    # Imported here: pydantic-ai and the OpenTelemetry SDK take seconds to import, paid only by these tests.
    from llm_monitoring_tests import real_writers

    return real_writers


def test_every_format_ingests_as_exactly_its_runs_once(writers, env, logs_dir: Path, database_url: str):
    from llm_monitoring.runner import run_ingest

    totals = writers.write_acceptance_folder(logs_dir)
    outcome = run_ingest()
    assert (outcome.metadata["runs_stored"], outcome.metadata["quarantined"], outcome.metadata["failed_runs"]) == (10, 0, 0)
    database = Database(database_url)
    try:
        with database.connect() as connection:
            rows = connection.execute(
                sa.select(
                    llm_logs.c.origin,
                    llm_logs.c.requests,
                    llm_logs.c.total_input_tokens,
                    llm_logs.c.cache_read_tokens,
                    llm_logs.c.total_output_tokens,
                    llm_logs.c.tool_call_count,
                    llm_logs.c.total_cost,
                    llm_logs.c.model,
                )
            ).all()
        assert len(rows) == totals.runs == 10
        assert sum(row.requests for row in rows) == totals.requests
        assert sum(row.total_input_tokens for row in rows) == totals.input_tokens
        assert sum(row.cache_read_tokens for row in rows) == totals.cache_read_tokens
        assert sum(row.total_output_tokens for row in rows) == totals.output_tokens
        assert sum(row.tool_call_count for row in rows) == totals.tool_calls
        assert all(row.total_cost == totals.run_cost for row in rows), [row.total_cost for row in rows]
        assert sorted(row.origin for row in rows).count("otlp") == 3
        assert sorted(row.origin for row in rows).count("history") == 2
        assert {row.model.removesuffix("-2024-07-18") for row in rows} == {"gpt-4o-mini"}

        again = run_ingest()
        assert (again.metadata["runs_stored"], count_rows(database, llm_logs)) == (0, 10)

        with (logs_dir / "course_runs.jsonl").open("ab") as handle:
            handle.write(writers.json_lines([writers.course_log(writers.agent_run(10))]))
        appended = run_ingest()
        assert (appended.metadata["runs_stored"], appended.metadata["already_stored"], count_rows(database, llm_logs)) == (1, 0, 11)
    finally:
        database.dispose()


def test_a_trace_split_over_files_is_stored_once_when_its_root_arrives(
    writers, monkeypatch: pytest.MonkeyPatch, logs_dir: Path, database: Database
):
    monkeypatch.setenv("SETTLE_SECONDS", "3600")  # the waiting spans never go quiet here
    parts = writers.split_requests(writers.agent_run(3), parts=3)  # the root span is in the last part
    for index, part in enumerate(parts[:2]):
        (logs_dir / f"spans_{index}.json").write_bytes(orjson.dumps(part))
    first = ingest(logs_dir, database)
    assert (first.stored, stored(database)) == (0, 0), "an incomplete trace waits"
    (logs_dir / "spans_2.json").write_bytes(orjson.dumps(parts[2]))
    second = ingest(logs_dir, database)
    assert (second.stored, stored(database)) == (1, 1)
    with database.connect() as connection:
        run = connection.execute(sa.select(llm_logs.c.requests, llm_logs.c.tool_call_count, llm_logs.c.origin)).one()
        waiting = connection.execute(sa.text("SELECT count(*) FROM waiting_spans")).scalar()
    assert (run.requests, run.tool_call_count, run.origin, waiting) == (3, 2, "otlp", 0)
    (logs_dir / "again.json").write_bytes(orjson.dumps(writers.run_request(writers.agent_run(3))))
    assert ingest(logs_dir, database).stored == 0, "the same trace from another file is the same run"


def test_a_trace_whose_root_never_comes_is_stored_once_it_goes_quiet(writers, settled_now, logs_dir: Path, database: Database):
    run = writers.agent_run(4)
    spans = [span for span in run.spans if span.parent is not None]  # an exporter that lost the root
    (logs_dir / "orphans.jsonl").write_bytes(writers.json_lines([writers.otlp_request(spans)]))
    report = ingest(logs_dir, database)  # quiet for SETTLE_SECONDS=0 at the end of the pass
    assert (report.stored, stored(database)) == (1, 1)
    assert ingest(logs_dir, database).stored == 0


def test_inspect_prints_formats_and_runs_without_writing(writers, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from llm_monitoring.cli import main

    folder = tmp_path / "inspected"
    writers.write_acceptance_folder(folder)
    (folder / "repr.json").write_bytes(b'{"messages": ["ModelRequest(parts=[UserPromptPart(content=\'hi\')])"]}')
    code = main(["inspect", *sorted(str(path) for path in folder.iterdir())])
    out = capsys.readouterr().out
    assert code == 1, "a file that would be quarantined makes inspect exit 1"
    assert "format: OTLP JSON traces" in out or "format: JSON Lines" in out
    assert "format: pydantic-ai message history" in out and "format: JSON array of runs" in out
    assert out.count("openai/gpt-4o-mini") == 10
    assert "ModelMessagesTypeAdapter" in out
    assert not list(tmp_path.glob("*.db")), "inspect writes nothing"
