"""The S3 log source against a real S3 API server (moto_server on 127.0.0.1): exactly once without renames,
no GET of a known object, overwritten keys, quarantine, outages, concurrent runs, and the sensor's cursor."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import boto3
import botocore.exceptions
import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.config import BucketLocation
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.defs.keys import ingest_run_config, ingest_run_files
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.ingest import ingest_files
from llm_monitoring.runner import IngestFailed, run_ingest
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.sources import S3Source, SourceUnavailable, open_source
from llm_monitoring.sources.bucket_scan import ScanCursor
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.objects import ObjectRecord, count_objects, record_objects
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import ingest_errors, llm_logs, source_objects
from llm_monitoring_tests.processes import wait_until
from llm_monitoring_tests.s3_server import AWS_VARIABLES, TEST_CREDENTIALS, MotoServer, populated_body, populated_key


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "requests.log")
    yield server
    server.stop()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> str:
    """A new bucket on the server; the settings point at it (LOGS_DIR set by each test) and a SQLite database."""
    aws_env(monkeypatch, s3_server.endpoint)
    for name, value in {"DATABASE_URL": sqlite_url, "SETTLE_SECONDS": "0", "S3_TIMEOUT_SECONDS": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    name = f"logs-{uuid.uuid4().hex[:10]}"
    client(s3_server).create_bucket(Bucket=name)
    return name


def client(server: MotoServer):
    return boto3.session.Session().client("s3", endpoint_url=server.endpoint, region_name="us-east-1", **_keys())


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def upload(server: MotoServer, bucket: str, prefix: str, folder: Path, count: int, *, seed: int) -> list[str]:
    """`count` sample logs (the project's writer) uploaded under `prefix`; their keys."""
    from concurrent.futures import ThreadPoolExecutor

    paths = write_sample_logs(folder, count, seed=seed)
    s3 = client(server)

    def put(path: Path) -> str:
        s3.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())
        return prefix + path.name

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(put, paths))


def keys_in(server: MotoServer, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in client(server).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [entry["Key"] for entry in page.get("Contents", ())]
    return keys


def gets_after_marker(server: MotoServer, bucket: str) -> int:
    """Object GETs in `bucket` logged so far, read once a marker request made now is in the log."""
    marker = f"marker-{uuid.uuid4().hex}"
    with contextlib.suppress(botocore.exceptions.ClientError):  # a 404, logged all the same
        client(server).head_object(Bucket=bucket, Key=marker)
    wait_until(lambda: any(marker in path for _, path in server.requests()), 10, "the marker request in the server's log", 0.05)
    return len(server.object_gets(bucket))


def rows(url: str, table: sa.Table) -> int:
    database = Database(url)
    try:
        return count_rows(database, table)
    finally:
        database.dispose()


def test_prefix_ingest_stores_each_object_once_and_never_gets_a_known_one(
    s3_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch, sqlite_url
):
    """The issue's acceptance: 250 objects -> 250 runs; again -> nothing, no GET; 50 more -> 50; all still there."""
    database = Database(sqlite_url)
    database.ensure_schema()
    monkeypatch.setenv("LOGS_DIR", f"s3://{bucket}/prod/runs/")
    first = upload(s3_server, bucket, "prod/runs/", tmp_path / "a", 250, seed=1)
    client(s3_server).put_object(Bucket=bucket, Key="prod/elsewhere.json", Body=b"{}")  # outside the prefix

    before = gets_after_marker(s3_server, bucket)
    assert ingest_files(open_source(), database).stored == 250  # two batches, in forked worker processes
    assert gets_after_marker(s3_server, bucket) - before == 250

    again = ingest_files(open_source(), database)  # listed, found in the ledger, never read
    assert (again.files_seen, again.stored) == (0, 0)
    assert gets_after_marker(s3_server, bucket) - before == 250

    upload(s3_server, bucket, "prod/runs/", tmp_path / "b", 50, seed=2)
    assert ingest_files(open_source(), database).stored == 50
    assert gets_after_marker(s3_server, bucket) - before == 300
    assert count_rows(database, llm_logs) == 300 and count_objects(database, bucket, "stored") == 300
    kept = keys_in(s3_server, bucket, "prod/runs/")
    assert len(kept) == 300 and set(first) <= set(kept)  # nothing moved or deleted
    database.dispose()
    database.dispose()


def test_the_ingest_job_reads_a_bucket_logs_dir_and_names_keys_relative_to_its_prefix(
    s3_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch, sqlite_url
):
    monkeypatch.setenv("LOGS_DIR", f"s3://{bucket}/team/a")
    keys = upload(s3_server, bucket, "team/a/2026/11/", tmp_path, 3, seed=8)  # keys in "folders" under the prefix
    outcome = run_ingest()
    assert outcome.metadata["runs_stored"] == 3 and outcome.metadata["source"].startswith(
        f"s3://{bucket}/team/a/ (*.json,*.jsonl,*.ndjson;"
    )
    named = run_ingest([key.removeprefix("team/a/") for key in keys[:2]])
    assert (named.metadata["files_seen"], named.metadata["already_stored"], named.metadata["runs_stored"]) == (2, 2, 0)
    assert rows(sqlite_url, llm_logs) == 3


def test_an_overwritten_key_is_new_and_the_same_bytes_again_are_not(s3_server: MotoServer, bucket: str, tmp_path: Path, database: Database):
    keys = upload(s3_server, bucket, "runs/", tmp_path / "a", 3, seed=3)

    def ingest():
        return ingest_files(S3Source(BucketLocation(bucket, "runs/")), database)

    assert ingest().stored == 3
    s3 = client(s3_server)
    same = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    s3.put_object(Bucket=bucket, Key=keys[0], Body=same)  # rewritten with the same bytes: the same ETag
    assert ingest().files_seen == 0
    other = write_sample_logs(tmp_path / "b", 1, seed=4)[0].read_bytes()
    s3.put_object(Bucket=bucket, Key=keys[1], Body=other)  # overwritten: a new ETag, a new run
    report = ingest()
    assert (report.files_seen, report.stored) == (1, 1)
    # Named, as a sensor's run names them: the known ones are counted, never read.
    named = ingest_files(S3Source(BucketLocation(bucket, "runs/")), database, [key.removeprefix("runs/") for key in keys])
    assert (named.files_seen, named.already_stored, named.stored) == (3, 3, 0)
    assert count_rows(database, llm_logs) == 4
    with database.connect() as connection:
        versions = connection.execute(sa.select(source_objects.c.key, source_objects.c.etag).where(source_objects.c.key == keys[1])).all()
    assert len(versions) == 2 and len({etag for _, etag in versions}) == 2


def test_every_log_format_is_read_from_a_bucket_object(s3_server: MotoServer, bucket: str, tmp_path: Path, database: Database):
    from llm_monitoring_tests import real_writers  # pydantic-ai and OpenTelemetry: imported by the tests that use them

    folder = tmp_path / "formats"
    totals = real_writers.write_acceptance_folder(folder)
    s3 = client(s3_server)
    for path in folder.iterdir():
        s3.put_object(Bucket=bucket, Key=f"formats/{path.name}", Body=path.read_bytes())
    source = S3Source(BucketLocation(bucket, "formats/"))
    report = ingest_files(source, database)
    assert (report.stored, report.quarantined, report.failed_runs) == (totals.runs, 0, 0)
    # An object never grows: a JSON Lines object is done with like any other, by key and ETag.
    assert ingest_files(S3Source(BucketLocation(bucket, "formats/")), database).files_seen == 0
    assert count_rows(database, llm_logs) == totals.runs


def test_quarantine_records_the_reason_copies_when_configured_and_never_reads_it_again(
    s3_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch, sqlite_url
):
    monkeypatch.setenv("LOGS_DIR", f"s3://{bucket}/in/")
    monkeypatch.setenv("S3_QUARANTINE_PREFIX", "quarantine/")
    monkeypatch.setenv("S3_PROCESSED_PREFIX", "in/done/")  # below LOGS_DIR: never listed as pending
    good = upload(s3_server, bucket, "in/", tmp_path, 2, seed=5)
    s3 = client(s3_server)
    s3.put_object(Bucket=bucket, Key="in/broken.json", Body=b'{"messages": [')
    database = Database(sqlite_url)
    database.ensure_schema()
    report = ingest_files(S3Source(BucketLocation(bucket, "in/")), database)
    assert (report.stored, report.quarantined) == (2, 1)
    with database.connect() as connection:
        error = connection.execute(sa.select(ingest_errors)).one()
    assert "truncated JSON" in error.error and error.filepath == f"s3://{bucket}/in/broken.json"
    assert error.quarantined_as == f"s3://{bucket}/quarantine/broken.json"
    assert s3.get_object(Bucket=bucket, Key="quarantine/broken.json")["Body"].read() == b'{"messages": ['
    # Stored objects moved under the processed prefix (copy, then delete); the rejected one stays, copied.
    assert sorted(keys_in(s3_server, bucket, "in/")) == sorted(["in/broken.json"] + [key.replace("in/", "in/done/") for key in good])
    before = gets_after_marker(s3_server, bucket)
    assert ingest_files(S3Source(BucketLocation(bucket, "in/")), database).files_seen == 0
    assert gets_after_marker(s3_server, bucket) == before
    with database.connect() as connection:
        assert connection.scalar(sa.select(ingest_errors.c.occurrences)) == 1
    database.dispose()


def test_a_server_that_goes_away_mid_run_loses_nothing_and_doubles_nothing(
    s3_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch, sqlite_url
):
    monkeypatch.setenv("S3_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("INGEST_BATCH_FILES", "10")
    monkeypatch.setenv("INGEST_WORKERS", "1")
    upload(s3_server, bucket, "batch/", tmp_path, 30, seed=6)
    source = S3Source(BucketLocation(bucket, "batch/"))
    database = Database(sqlite_url)
    database.ensure_schema()

    def pause_after_first(report) -> None:
        s3_server.pause()

    try:
        with pytest.raises(SourceUnavailable) as error:
            ingest_files(source, database, on_batch=pause_after_first)
    finally:
        s3_server.resume()
    message = str(error.value)
    assert message.startswith(f"network timeout: {s3_server.endpoint} did not answer within 0.5 s while reading s3://{bucket}/batch/")
    assert "\n" not in message and TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in message
    assert count_rows(database, llm_logs) == 10 and count_objects(database, bucket) == 10  # the first batch, committed
    report = ingest_files(S3Source(BucketLocation(bucket, "batch/")), database)
    assert (report.files_seen, report.stored) == (20, 20)
    assert count_rows(database, llm_logs) == 30 and count_objects(database, bucket) == 30
    assert count_rows(database, ingest_errors) == 0
    database.dispose()


def _ingest_in_child(bucket: str, url: str) -> int:
    database = Database(url)
    try:
        return ingest_files(S3Source(BucketLocation(bucket, "shared/")), database).stored
    finally:
        database.dispose()


def test_two_concurrent_runs_on_one_prefix_store_each_object_once(
    s3_server: MotoServer, bucket: str, tmp_path: Path, monkeypatch, sqlite_url
):
    monkeypatch.setenv("INGEST_WORKERS", "1")
    upload(s3_server, bucket, "shared/", tmp_path, 60, seed=7)
    Database(sqlite_url).ensure_schema()
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        stored = list(pool.map(_ingest_in_child, [bucket, bucket], [sqlite_url, sqlite_url]))
    assert sum(stored) == 60
    database = Database(sqlite_url)
    assert count_rows(database, llm_logs) == 60 and count_objects(database, bucket) == 60
    database.dispose()


def sensor_tick(instance: dg.DagsterInstance, logs_dir: str, url: str, cursor: str | None):
    resources = {"log_source": LogSourceResource(logs_dir=logs_dir), "database": DatabaseResource(url=url)}
    return new_log_files_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))


def requested(result) -> list[str]:
    return [name for request in result.run_requests or () for name in ingest_run_files(request.run_config)]


def record_done(url: str, bodies: dict[str, bytes], names: list[str]) -> None:
    """What the requested runs would record: their objects, by key and ETag (the MD5 of their bytes)."""
    database = Database(url)
    database.ensure_schema()
    records = [ObjectRecord(PREFIX + name, hashlib.md5(bodies[name]).hexdigest(), None, 1, "h", "stored") for name in names]
    record_objects(database, "agent-logs", records)
    database.dispose()


PREFIX = "prod/runs/"


def test_sensor_cursor_walks_thousands_of_objects_in_runs_and_hands_back_failed_ones(tmp_path: Path, monkeypatch, sqlite_url):
    count = 2000
    server = MotoServer(tmp_path / "populated.log", populate=f"agent-logs/{PREFIX}", count=count, size=64)
    bodies = {populated_key("", index): populated_body(index, 64) for index in range(count)}
    try:
        aws_env(monkeypatch, server.endpoint)
        for name, value in {"SETTLE_SECONDS": "0", "INGEST_RUN_FILES": "300", "S3_RECONCILE_SECONDS": "3600"}.items():
            monkeypatch.setenv(name, value)
        logs_dir = f"s3://agent-logs/{PREFIX}"
        with dg.instance_for_test() as instance:
            first = sensor_tick(instance, logs_dir, sqlite_url, None)
            names = requested(first)  # capped: 5 runs of 300
            assert len(first.run_requests) == 5 and names == [populated_key("", index) for index in range(1500)]
            assert len({request.run_key for request in first.run_requests}) == 5
            assert len(first.cursor) < 300  # a watermark, never the keys seen
            assert ScanCursor.parse(first.cursor).after == PREFIX + populated_key("", 1499)
            record_done(sqlite_url, bodies, names)

            second = sensor_tick(instance, logs_dir, sqlite_url, first.cursor)
            assert requested(second) == [populated_key("", index) for index in range(1500, count)]
            record_done(sqlite_url, bodies, requested(second))

            s3 = boto3.session.Session().client("s3", region_name="us-east-1")
            added = {"agent_99999999.json": b"{}", "agent_00000500x.json": b"[]", populated_key("", 1): b"{ }"}
            for name, body in added.items():  # after the watermark, behind it, and an overwritten key
                s3.put_object(Bucket="agent-logs", Key=PREFIX + name, Body=body)
            bodies.update(added)
            monkeypatch.setenv("S3_RECONCILE_SECONDS", "0")  # the reconcile sweep is due
            picked = sensor_tick(instance, logs_dir, sqlite_url, second.cursor)  # the next tick finds all three
            assert sorted(requested(picked)) == sorted(added)
            monkeypatch.setenv("S3_RECONCILE_SECONDS", "3600")

            # A failed run hands its objects back: the next tick requests them again.
            from llm_monitoring.definitions import defs

            instance.create_run_for_job(
                job_def=defs.resolve_job_def("ingest_logs_job"),
                run_config=ingest_run_config(["agent_99999999.json"]),
                tags={"dagster/sensor_name": "new_log_files_sensor"},
                status=dg.DagsterRunStatus.FAILURE,
            )
            record_done(sqlite_url, bodies, [populated_key("", 1), "agent_00000500x.json"])
            retried = sensor_tick(instance, logs_dir, sqlite_url, picked.cursor)
            assert requested(retried) == ["agent_99999999.json"]
            record_done(sqlite_url, bodies, ["agent_99999999.json"])
            idle = sensor_tick(instance, logs_dir, sqlite_url, retried.cursor)
            assert not idle.run_requests and "no new settled log objects" in idle.skip_reason.skip_message
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no credentials", "no AWS credentials for listing s3://{bucket}/x/: set AWS_ACCESS_KEY_ID"),
        ("no bucket", "bucket no-such-bucket-here does not exist at {endpoint}"),
        ("server down", "cannot reach http://127.0.0.1:9 while listing"),
    ],
)
def test_sensor_skips_with_one_line_and_keeps_its_cursor(
    s3_server: MotoServer, bucket: str, monkeypatch, sqlite_url, tmp_path, case, expected
):
    logs_dir = f"s3://{bucket}/x/"
    if case == "no credentials":
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    elif case == "no bucket":
        logs_dir = "s3://no-such-bucket-here/x/"
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with dg.instance_for_test() as instance:
        result = sensor_tick(instance, logs_dir, sqlite_url, '{"after":"x/a"}')
    assert isinstance(result, dg.SkipReason)
    message = result.skip_message
    assert expected.format(bucket=bucket, endpoint=s3_server.endpoint) in message and "\n" not in message
    assert TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in message


def test_access_denied_fails_the_run_in_one_line_and_marks_nothing(tmp_path: Path, monkeypatch, sqlite_url):
    # moto checks credentials against its IAM when INITIAL_NO_AUTH_ACTION_COUNT is 0
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    server = MotoServer(tmp_path / "auth.log")
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        aws_env(monkeypatch, server.endpoint)
        monkeypatch.setenv("DATABASE_URL", sqlite_url)
        monkeypatch.setenv("LOGS_DIR", "s3://agent-logs/prod/runs/")
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        with pytest.raises(IngestFailed) as error:
            run_ingest()
    finally:
        server.stop()
    message = str(error.value)
    assert message.startswith("access denied (InvalidAccessKeyId) while listing s3://agent-logs/prod/runs/") and "\n" not in message
    assert TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in message
    database = Database(sqlite_url)
    assert count_rows(database, llm_logs) == 0 and count_objects(database, "agent-logs") == 0
    database.dispose()


def test_a_database_made_before_the_object_ledger_gets_it(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    with database.transaction() as connection:
        connection.exec_driver_sql("DROP TABLE source_objects")
        connection.exec_driver_sql("UPDATE schema_state SET version = 'old'")
    database.ensure_schema()
    assert count_objects(database, "any") == 0
    database.dispose()


def test_the_folder_sensors_cursor_reads_as_a_fresh_bucket_cursor():
    assert ScanCursor.parse("17") == ScanCursor() and ScanCursor.parse("not json") == ScanCursor()
    cursor = ScanCursor(after="p/b.json", sweep="p/a", swept_at=5.0, generation=3)
    assert ScanCursor.parse(cursor.text()) == cursor
    assert cursor.handed_back(["p/a.json", "p/c.json"]).after == "p/a.jso"
    assert cursor.handed_back(["p/c.json"]) == cursor
