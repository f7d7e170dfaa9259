"""One bad file never stops the pipeline: whatever a file does in any stage, it alone is quarantined."""

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from llm_monitoring.ingest import content_hash
from llm_monitoring.runner import IngestFailed, run_ingest
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import ingest_errors, llm_logs
from llm_monitoring_tests.poison import (
    age_all,
    assert_outcome,
    file_contents,
    install_refusal,
    log_document,
    reader_bypasses_permissions,
    refused_by_the_database,
    write_poison,
)

GOOD = 1000
MAX_LOG_BYTES = 200_000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_poison_in_every_stage_is_quarantined_and_the_good_files_stored_in_one_pass(
    workers: str, env, logs_dir: Path, database_url: str, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("INGEST_WORKERS", workers)
    monkeypatch.setenv("MAX_LOG_BYTES", str(MAX_LOG_BYTES))
    good = {content_hash(path.read_bytes()) for path in write_sample_logs(logs_dir, GOOD, seed=21)}
    outside = tmp_path / "outside"
    outside.mkdir()
    postgres = database_url.startswith("postgres")
    poisons = write_poison(
        logs_dir,
        postgres=postgres,
        reader_bypasses_permissions=reader_bypasses_permissions(tmp_path),
        outside=outside,
        max_log_bytes=MAX_LOG_BYTES,
    )
    install_refusal(database_url)  # and the database itself refuses one run in its bulk write
    poisons.append(refused_by_the_database(logs_dir))
    age_all(logs_dir, random.Random(int(workers)))  # poison files spread over the batches
    before = file_contents(logs_dir)
    outside_before = file_contents(outside)

    outcome = run_ingest()

    stored_poison = sum(poison.expect == "stored" for poison in poisons)
    assert outcome.metadata["runs_stored"] == GOOD + stored_poison
    assert outcome.metadata["quarantined"] == len(poisons) - stored_poison
    assert outcome.metadata["still_being_written"] == 0
    assert_outcome(database_url, logs_dir, good, poisons, before)
    assert file_contents(outside) == outside_before  # the symlink's target is neither read nor moved
    # nothing is retried: the next pass finds nothing to do
    assert run_ingest().metadata["files_seen"] == 0


def test_a_database_fault_that_is_not_about_the_rows_fails_the_run_and_quarantines_nothing(postgres_env_database: Database, logs_dir: Path):
    # A full disk while storing one batch must not be taken for bad rows: nothing is quarantined,
    # the run fails with one line, and every file stays in place for the retry.
    write_sample_logs(logs_dir, 20, seed=4)
    document = log_document("disk_full")
    document["agent_name"] = "disk_full_on_insert"
    import json

    (logs_dir / "trigger.json").write_text(json.dumps(document))
    with postgres_env_database.transaction() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION fail_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER disk_full BEFORE INSERT ON llm_logs FOR EACH ROW "
            "WHEN (NEW.agent_name = 'disk_full_on_insert') EXECUTE FUNCTION fail_disk_full()"
        )
    with pytest.raises(IngestFailed) as failure:
        run_ingest()
    assert "No space left on device" in str(failure.value) and "\n" not in str(failure.value)
    assert count_rows(postgres_env_database, llm_logs) == 0 and count_rows(postgres_env_database, ingest_errors) == 0
    assert len(list(logs_dir.glob("*.json"))) == 21 and not (logs_dir / "_quarantine").exists()
    with postgres_env_database.transaction() as connection:
        connection.exec_driver_sql("DROP TRIGGER disk_full ON llm_logs")
    assert run_ingest().metadata["runs_stored"] == 21


def test_quarantine_reason_names_the_exception_and_the_stage(env, logs_dir: Path, database_url: str):
    install_refusal(database_url)
    refused_by_the_database(logs_dir)
    write_sample_logs(logs_dir, 3, seed=5)
    outcome = run_ingest()
    assert (outcome.metadata["runs_stored"], outcome.metadata["quarantined"]) == (3, 1)
    database = Database(database_url)
    with database.connect() as connection:
        reason = connection.scalar(sa.select(ingest_errors.c.error))
    database.dispose()
    expected = "CheckViolation while storing" if database_url.startswith("postgres") else "IntegrityError while storing"
    assert reason.startswith(expected) and "refuse" in reason, reason
