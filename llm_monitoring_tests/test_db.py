import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from llm_monitoring.database_url import mask_url, normalize_url
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.storage.bulk import RunToStore, store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows, get_log, run_days, run_days_in_id_ranges, runs_by_day
from llm_monitoring.storage.schema import eval_checks, llm_logs, schema_state
from llm_monitoring_tests.conftest import fixture_bytes
from llm_monitoring_tests.history_data import store_day


def run_to_store(name: str, raw: bytes | None = None) -> RunToStore:
    return run_from_bytes(raw if raw is not None else fixture_bytes(name), name)


def test_batch_stores_logs_with_all_their_checks(database: Database):
    result = store_runs(database, [run_to_store("streamed_structured_output.json"), run_to_store("gemini_thinking.json")])
    assert len(result.inserted) == 2
    assert count_rows(database, llm_logs) == 2
    assert count_rows(database, eval_checks) == 14


def test_same_content_twice_gives_one_row(database: Database):
    run = run_to_store("gemini_thinking.json")
    first = store_runs(database, [run, run])
    second = store_runs(database, [run])
    assert len(first.inserted) == 1 and not second.inserted
    assert second.already_stored == {run.content_hash}
    assert count_rows(database, llm_logs) == 1
    assert count_rows(database, eval_checks) == 7


def test_costs_are_exact_decimals_and_times_keep_utc(database: Database):
    run = run_to_store("text_answer_per_response_usage.json")
    log_id = store_runs(database, [run]).inserted[run.content_hash]
    row = get_log(database, log_id)
    assert row["total_cost"] == run.price.total_cost
    assert isinstance(row["total_cost"], Decimal)
    assert row["run_started_at"] == datetime(2025, 10, 15, 16, 0, 5, 100000, tzinfo=UTC)
    assert row["cache_read_tokens"] == 512
    assert row["pricing_status"] == "priced"


def test_unknown_model_and_missing_usage_store_null_cost(database: Database):
    runs = [run_to_store("unknown_model.json"), run_to_store("old_pydantic_ai_no_usage.json")]
    inserted = store_runs(database, runs).inserted
    for run in runs:
        row = get_log(database, inserted[run.content_hash])
        assert row["total_cost"] is None and row["input_cost"] is None
        assert row["pricing_status"] != "priced"
    assert get_log(database, inserted[runs[1].content_hash])["total_input_tokens"] is None


def test_not_applicable_checks_are_stored_as_null(database: Database):
    run = run_to_store("role_content_messages.json")
    log_id = store_runs(database, [run]).inserted[run.content_hash]
    with database.connect() as connection:
        rows = dict(
            connection.execute(sa.select(eval_checks.c.check_name, eval_checks.c.passed).where(eval_checks.c.log_id == log_id)).all()
        )
    assert rows["answer_clear"] is None
    assert rows["tool_call_search"] is False


def test_nul_character_in_a_valid_log_is_stored(database: Database):
    raw = fixture_bytes("string_output_naive_time.json").replace(b"Only use SEC filings.", b"Only use SEC\\u0000 filings.")
    run = run_to_store("nul.json", raw)
    log_id = store_runs(database, [run]).inserted[run.content_hash]
    row = get_log(database, log_id)
    assert "\x00" not in row["instructions"]
    assert row["raw_json"] == raw.decode()


def test_schema_upgrade_adds_missing_columns(sqlite_url: str):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE llm_logs (id INTEGER PRIMARY KEY, filepath TEXT NOT NULL, content_hash VARCHAR(64) NOT NULL)"
        )
    engine.dispose()
    database = Database(sqlite_url)
    database.ensure_schema()
    database.ensure_schema()  # idempotent
    columns = {column["name"] for column in sa.inspect(database.engine).get_columns("llm_logs")}
    assert {"run_started_at", "pricing_status", "origin", "cache_read_tokens"} <= columns
    database.dispose()


def test_schema_in_place_is_found_with_one_read_and_no_write_lock(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    other = Database(sqlite_url)
    try:
        with database.transaction():  # another writer holds the lock: the check must not wait for it
            other.ensure_schema()
    finally:
        other.dispose()
        database.dispose()


def test_urls_accept_postgres_schemes_and_never_show_passwords():
    assert normalize_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert mask_url("failed for postgresql://user:s3cret@db:5432/x") == "failed for postgresql://user:***@db:5432/x"
    database = Database("postgresql://user:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in database.display_url and "s3cret" not in repr(database)


def test_unreachable_database_error_names_it_without_password():
    database = Database("postgresql://user:s3cret@127.0.0.1:1/monitoring")
    try:
        database.ensure_schema()
    except Exception as error:
        message = str(error)
        assert type(error).__name__ == "DatabaseUnavailable"
        assert "127.0.0.1:1/monitoring" in message and "s3cret" not in message
        assert "\n" not in message
    else:
        raise AssertionError("expected DatabaseUnavailable")


def test_new_sqlite_database_gets_large_pages_and_wal(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    try:
        with database.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA page_size").scalar() == 16384
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        database.dispose()


def test_values_keep_their_types_through_the_bulk_writers(database: Database):
    # The bulk writers bypass SQLAlchemy's statements: what comes back must be what a plain insert gives.
    raw = fixture_bytes("text_answer_per_response_usage.json").replace(b"course late?", b"course\\u0000late?")
    run = run_to_store("text_answer_per_response_usage.json", raw)
    assert "\x00" in run.record.user_prompt
    log_id = store_runs(database, [run]).inserted[run.content_hash]
    row = get_log(database, log_id)
    assert row["id"] == log_id and row["content_hash"] == run.content_hash
    assert row["user_prompt"] == run.record.user_prompt.replace("\x00", "\ufffd")
    assert row["raw_json"] == run.raw_json
    assert row["created_at"].tzinfo is not None and row["run_finished_at"] == run.record.run_finished_at
    assert json.loads(row["tool_names"]) == list(run.record.tool_names) == ["search"]
    assert row["duration_seconds"] == run.record.duration_seconds and row["requests"] == run.record.requests
    with database.connect() as connection:
        checks = connection.execute(sa.select(eval_checks).where(eval_checks.c.log_id == log_id)).mappings().all()
    assert sorted((check["check_name"], check["passed"], check["score"]) for check in checks) == sorted(
        (check.check_name, check.passed, check.score) for check in run.checks
    )
    assert all(check["created_at"].tzinfo is not None for check in checks)


def test_sqlite_reads_neither_wait_for_a_writer_nor_block_one(sqlite_url: str):
    writer, reader = Database(sqlite_url), Database(sqlite_url)
    writer.ensure_schema()
    try:
        with writer.transaction():  # holds the write lock
            assert count_rows(reader, llm_logs) == 0  # would wait for the lock (busy timeout) and fail
        with reader.connect() as connection:
            connection.execute(sa.select(llm_logs.c.id)).all()  # a read transaction left open
            run = run_to_store("gemini_thinking.json")
            assert store_runs(writer, [run]).inserted
    finally:
        writer.dispose()
        reader.dispose()


def test_public_facade_is_the_storage_package() -> None:
    from llm_monitoring import db
    from llm_monitoring.storage import engine, errors, schema

    assert db.Database is engine.Database and db.open_database is engine.open_database
    assert db.DatabaseUnavailable is errors.DatabaseUnavailable and db.InvalidDatabaseUrl is errors.InvalidDatabaseUrl
    assert (db.llm_logs, db.eval_checks, db.feedback) == (schema.llm_logs, schema.eval_checks, schema.feedback)
    assert db.mask_url("postgresql://user:secret@host/monitoring") == "postgresql://user:***@host/monitoring"


def _reloptions(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT c.relname, coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}') FROM pg_class c "
                "LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname IN ('eval_checks', 'check_verdicts', 'llm_logs', 'run_search')"
            ).all()
    finally:
        engine.dispose()
    return {name: sorted(own) + [f"toast.{option}" for option in toast] for name, own, toast in rows}


def test_postgres_tables_vacuum_at_two_percent_of_their_rows(postgres_url: str):
    database = Database(postgres_url)
    database.ensure_schema()
    database.dispose()
    options = _reloptions(postgres_url)
    assert "autovacuum_vacuum_scale_factor=0.02" in options["eval_checks"]
    assert "autovacuum_analyze_scale_factor=0.02" in options["check_verdicts"]
    assert "toast.autovacuum_vacuum_scale_factor=0.02" in options["llm_logs"]
    assert "autovacuum_vacuum_insert_scale_factor=0.02" in options["run_search"]


def test_an_upgrade_drops_the_indexes_a_newer_structure_replaced(database: Database):
    with database.transaction() as connection:
        # What an earlier version created: the check filters read it before check_verdicts did.
        connection.exec_driver_sql("CREATE INDEX ix_eval_checks_outcome ON eval_checks (check_name, passed, log_id)")
        connection.execute(sa.delete(schema_state))
    assert "ix_eval_checks_outcome" in {index["name"] for index in sa.inspect(database.engine).get_indexes("eval_checks")}
    database.ensure_schema()
    assert "ix_eval_checks_outcome" not in {index["name"] for index in sa.inspect(database.engine).get_indexes("eval_checks")}


def test_runs_and_days_of_runs_are_counted_by_utc_day(database: Database):
    first = date(2026, 3, 1)
    stored = {
        day: store_day(database, day, count, seed=count)
        for day, count in ((first, 3), (first + timedelta(days=1), 2), (first + timedelta(days=30), 4))
    }
    # Days apart and a day without runs: each counted on its own, the gap never read as one of them.
    asked = [first, first + timedelta(days=1), first + timedelta(days=2), first + timedelta(days=30)]
    assert runs_by_day(database, asked) == {
        first: 3,
        first + timedelta(days=1): 2,
        first + timedelta(days=2): 0,
        first + timedelta(days=30): 4,
    }
    assert run_days(database) == set(stored)
    late = stored[first + timedelta(days=30)]
    assert run_days_in_id_ranges(database, [(late[0], late[-1])]) == {first + timedelta(days=30)}
