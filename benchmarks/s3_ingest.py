"""Bucket ingest throughput against its floor, and sensor ticks over a large bucket (moto_server on 127.0.0.1).

    uv run python benchmarks/s3_ingest.py --count 1000 --tick-objects 100000

Ingest: COUNT realistic logs (the sample writer's, 5/30/90 KB) under s3://bench-logs/many/, written
straight into the server's store. Then, in this order, each on a fresh SQLite database:
- floor: list the prefix and GET every object with boto3, INGEST_WORKERS x S3_CONCURRENCY GETs in
  flight (what the ingest keeps in flight), in this process;
- ingest: `python -m llm_monitoring.runner` with LOGS_DIR=s3://bench-logs/many/ in a fresh process,
  and the same on a prefix of one object; marginal time = time(COUNT) - time(1).
Prints objects/s, MB/s, and the marginal ratio to the floor.

Sensor: a second server holding TICK_OBJECTS small objects; times one evaluation of
new_log_files_sensor on a fresh cursor (lists from the start until 5 runs are full), a steady tick
with every object in the ledger and 10 new ones after the watermark, and a tick of the reconcile
sweep; with the time of one bare listing page for scale (moto sorts the whole bucket for every
page, S3 does not). Prints, never asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import dagster as dg  # noqa: E402
from botocore.config import Config  # noqa: E402

from llm_monitoring.config import get_settings  # noqa: E402
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor  # noqa: E402
from llm_monitoring.defs.keys import ingest_run_files  # noqa: E402
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.objects import ObjectRecord, record_objects  # noqa: E402
from llm_monitoring_tests.s3_server import TEST_CREDENTIALS, MotoServer, populated_body, populated_key  # noqa: E402

BUCKET = "bench-logs"


def client(endpoint: str, pool: int = 10):
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(max_pool_connections=pool))


def floor(endpoint: str, prefix: str, concurrency: int) -> tuple[float, int, int]:
    s3 = client(endpoint, concurrency)
    started = time.perf_counter()
    keys = [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for entry in page.get("Contents", ())
    ]
    with ThreadPoolExecutor(concurrency) as pool:
        size = sum(pool.map(lambda key: len(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()), keys))
    return time.perf_counter() - started, len(keys), size


def runner(prefix: str, env: dict[str, str], folder: Path) -> tuple[float, str]:
    database = folder / f"bench-{time.monotonic_ns()}.db"
    env = {**env, "LOGS_DIR": f"s3://{BUCKET}/{prefix}", "DATABASE_URL": f"sqlite:///{database}"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "llm_monitoring.runner"], env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"runner failed: {result.stderr.strip()}")
    return elapsed, result.stdout.strip().splitlines()[-1]


def ingest_benchmark(count: int, folder: Path) -> None:
    settings = get_settings()
    in_flight = settings.workers * int(os.environ.get("S3_CONCURRENCY", "16"))
    started = time.perf_counter()
    server = MotoServer(folder / "ingest.log", populate=f"{BUCKET}/many/", count=count, samples=True)
    print(f"moto_server with {count} sample logs, ready in {time.perf_counter() - started:.1f} s")
    try:
        env = {
            **os.environ,
            **TEST_CREDENTIALS,
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SETTLE_SECONDS": "0",
        }
        os.environ.update({key: env[key] for key in (*TEST_CREDENTIALS, "AWS_ENDPOINT_URL")})
        first = client(server.endpoint).list_objects_v2(Bucket=BUCKET, Prefix="many/", MaxKeys=1)["Contents"][0]["Key"]
        client(server.endpoint).copy_object(
            Bucket=BUCKET, Key="one/" + first.removeprefix("many/"), CopySource={"Bucket": BUCKET, "Key": first}
        )
        floor_seconds, listed, size = floor(server.endpoint, "many/", in_flight)
        print(
            f"  floor: list + GET {listed} objects ({size / 1e6:.1f} MB), {in_flight} in flight: {floor_seconds:.2f} s, "
            f"{listed / floor_seconds:.0f} objects/s, {size / 1e6 / floor_seconds:.1f} MB/s"
        )
        many, line = runner("many/", env, folder)
        one, _ = runner("one/", env, folder)
        marginal = many - one
        print(f"  ingest: {line}")
        print(
            f"  ingest: {many:.2f} s for {count} objects, {one:.2f} s for one (start-up); marginal {marginal:.2f} s, "
            f"{count / marginal:.0f} objects/s, {size / 1e6 / marginal:.1f} MB/s; ratio to the floor {marginal / floor_seconds:.2f}"
        )
    finally:
        server.stop()


def tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> tuple[float, object]:
    resources = {"log_source": LogSourceResource(logs_dir=f"s3://{BUCKET}/tick/"), "database": DatabaseResource(url=url)}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    started = time.perf_counter()
    result = new_log_files_sensor(context)
    return time.perf_counter() - started, result


def describe(result) -> str:
    requests = getattr(result, "run_requests", None) or []
    files = sum(len(ingest_run_files(request.run_config)) for request in requests)
    skip = getattr(result, "skip_reason", None) or (result if isinstance(result, dg.SkipReason) else None)
    return f"{len(requests)} runs, {files} objects" + (f" ({skip.skip_message})" if skip is not None and skip.skip_message else "")


def sensor_benchmark(count: int, folder: Path) -> None:
    started = time.perf_counter()
    server = MotoServer(folder / "tick.log", populate=f"{BUCKET}/tick/", count=count, size=64)
    print(f"\nmoto_server with {count} objects, ready in {time.perf_counter() - started:.1f} s")
    os.environ.update({**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint, "AWS_EC2_METADATA_DISABLED": "true", "SETTLE_SECONDS": "0"})
    url = f"sqlite:///{folder / 'tick.db'}"
    try:
        s3 = client(server.endpoint)
        page = time.perf_counter()
        s3.list_objects_v2(Bucket=BUCKET, Prefix="tick/", StartAfter=populated_key("tick/", count // 2))
        print(f"  one bare listing page (1,000 keys): {time.perf_counter() - page:.2f} s")
        with dg.instance_for_test() as instance:
            elapsed, result = tick(instance, url, None)
            print(f"  fresh cursor: {elapsed:.2f} s -> {describe(result)}")
            database = Database(url)
            database.ensure_schema()
            recorded = time.perf_counter()
            records = [
                ObjectRecord(populated_key("tick/", index), hashlib.md5(populated_body(index, 64)).hexdigest(), None, 64, "h", "stored")
                for index in range(count)
            ]
            for start in range(0, count, 10_000):
                record_objects(database, BUCKET, records[start : start + 10_000])
            database.dispose()
            print(f"  (ledger holds all {count} objects: recorded in {time.perf_counter() - recorded:.1f} s)")
            for index in range(10):
                s3.put_object(Bucket=BUCKET, Key=populated_key("tick/", count + index), Body=b"{}")
            steady = f'{{"after":"{populated_key("tick/", count - 1)}","swept_at":{time.time()}}}'
            elapsed, result = tick(instance, url, steady)
            print(f"  steady tick, 10 new objects after the watermark: {elapsed:.2f} s -> {describe(result)}")
            sweeping = f'{{"after":"{populated_key("tick/", count + 9)}","swept_at":0}}'
            elapsed, result = tick(instance, url, sweeping)
            print(f"  tick with the reconcile sweep due (S3_TICK_SECONDS budget): {elapsed:.2f} s -> {describe(result)}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--tick-objects", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmmon-s3-ingest-") as temp:
        if args.count:
            ingest_benchmark(args.count, Path(temp))
        if args.tick_objects:
            sensor_benchmark(args.tick_objects, Path(temp))


if __name__ == "__main__":
    main()
