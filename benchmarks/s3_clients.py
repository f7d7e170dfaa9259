"""Which S3 client for the bucket source: boto3 against obstore, listing and concurrent GETs.

    uv run --with obstore python benchmarks/s3_clients.py --count 2000 --size 30000

Starts moto's server on 127.0.0.1 with COUNT objects of SIZE bytes (written straight into its store),
then for each library: a full listing of the prefix, and a GET of every object at several
concurrencies (boto3: one client shared by a thread pool; obstore: async gets under a semaphore, and
its blocking `get` from a thread pool). Prints wall time, objects/s, MB/s and the client's own CPU
seconds per 1,000 objects (on a 2-core machine the client competes with the server for the cores).
Without obstore installed, only boto3 is measured. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.config import Config

from llm_monitoring_tests.s3_server import MotoServer

BUCKET = "bench-logs"
PREFIX = "clients/"


def timed(label: str, count: int, size: int, work: Callable[[], int]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    done = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"  {label:38} {done:6d} in {wall:6.2f} s  {done / wall:7.0f}/s  {done * size / wall / 1e6:6.1f} MB/s  "
        f"client CPU {cpu * 1000 / max(done, 1):5.2f} s per 1,000"
    )


def boto3_client(endpoint: str, pool: int):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
        region_name="us-east-1",
        config=Config(
            max_pool_connections=pool, response_checksum_validation="when_required", request_checksum_calculation="when_required"
        ),
    )


def boto3_keys(client) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        keys += [entry["Key"] for entry in page.get("Contents", ())]
    return keys


def boto3_get_all(client, keys: list[str], concurrency: int) -> int:
    def get(key: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for _ in pool.map(get, keys))


def obstore_store(endpoint: str):
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=endpoint,
        access_key_id="testing",
        secret_access_key="testing-secret",
        region="us-east-1",
        client_options={"allow_http": True},
    )


def obstore_keys(store) -> list[str]:
    import obstore

    return [entry["path"] for chunk in obstore.list(store, prefix=PREFIX, chunk_size=1000) for entry in chunk]


def obstore_get_async(store, keys: list[str], concurrency: int) -> int:
    import obstore

    async def run() -> int:
        limit = asyncio.Semaphore(concurrency)

        async def get(key: str) -> int:
            async with limit:
                result = await obstore.get_async(store, key)
                return len(await result.bytes_async())

        return len(await asyncio.gather(*(get(key) for key in keys)))

    return asyncio.run(run())


def obstore_get_threads(store, keys: list[str], concurrency: int) -> int:
    import obstore

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for _ in pool.map(lambda key: len(obstore.get(store, key).bytes()), keys))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmmon-s3-") as temp:
        started = time.perf_counter()
        server = MotoServer(Path(temp) / "moto.log", populate=f"{BUCKET}/{PREFIX}", count=args.count, size=args.size)
        print(f"moto_server with {args.count} objects of {args.size} bytes, ready in {time.perf_counter() - started:.1f} s")
        try:
            client = boto3_client(server.endpoint, max(args.concurrency))
            keys = boto3_keys(client)
            print(f"boto3 {boto3.__version__}")
            timed("list", len(keys), 0, lambda: len(boto3_keys(client)))
            for concurrency in args.concurrency:
                timed(f"GET x{concurrency} threads", len(keys), args.size, lambda c=concurrency: boto3_get_all(client, keys, c))
            try:
                import obstore
            except ImportError:
                print("obstore not installed: run with `uv run --with obstore` to compare")
                return
            store = obstore_store(server.endpoint)
            print(f"obstore {obstore.__version__}")
            timed("list", len(keys), 0, lambda: len(obstore_keys(store)))
            for concurrency in args.concurrency:
                timed(f"GET x{concurrency} async", len(keys), args.size, lambda c=concurrency: obstore_get_async(store, keys, c))
                timed(
                    f"GET x{concurrency} threads (blocking get)",
                    len(keys),
                    args.size,
                    lambda c=concurrency: obstore_get_threads(store, keys, c),
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
