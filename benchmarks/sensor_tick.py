"""Sensor tick time over a large folder: N processed files and M new ones.

    uv run python benchmarks/sensor_tick.py --processed 100000 --new 1000

Processed files are recorded in the database's processed-file ledger as the ingest records them.
Measures one evaluation of `new_log_files_sensor` (listing, ledger lookup, batching) on SQLite and
Postgres, with prefix marking (the default) and with PROCESSED_DIR. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_monitoring.database_url import normalize_url
from llm_monitoring.defs.ingest.sensors import new_log_files_sensor
from llm_monitoring.defs.keys import ingest_run_files
from llm_monitoring.defs.resources import DatabaseResource, LogSourceResource
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import processed_files
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database


def make_folder(root: Path, processed: int, new: int, processed_dir: str) -> list[str]:
    root.mkdir(parents=True)
    target = root / processed_dir if processed_dir else root
    target.mkdir(exist_ok=True)
    names = []
    for index in range(processed):
        name = f"agent_{index:07d}.json"
        stored_as = name if processed_dir else "_" + name
        (target / stored_as).write_bytes(b"{}")
        names.append(f"{processed_dir}/{stored_as}" if processed_dir else stored_as)
    old = time.time() - 3600
    for index in range(new):
        path = root / f"new_{index:05d}.json"
        path.write_bytes(b'{"messages": []}')
        os.utime(path, (old, old))
    return names


def record_ledger(url: str, names: list[str]) -> None:
    database = Database(url)
    database.ensure_schema()
    now = datetime.now(UTC)
    with database.transaction() as connection:
        connection.execute(
            sa.insert(processed_files), [{"name": n, "processed_as": n, "content_hash": "x", "processed_at": now} for n in names]
        )
    database.dispose()


def tick(root: Path, url: str, processed_dir: str) -> tuple[float, int]:
    resources = {
        "log_source": LogSourceResource(logs_dir=str(root), processed_dir=processed_dir),
        "database": DatabaseResource(url=url),
    }
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        started = time.perf_counter()
        result = new_log_files_sensor(context)
        elapsed = time.perf_counter() - started
    files = sum(len(ingest_run_files(r.run_config)) for r in result.run_requests)
    return elapsed, files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processed", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    os.environ["SETTLE_SECONDS"] = "5"
    server = normalize_url(args.postgres)
    with tempfile.TemporaryDirectory(prefix="llmmon-tick-") as temp:
        for processed_dir in ("", "_processed"):
            root = Path(temp) / (processed_dir or "prefix")
            started = time.perf_counter()
            names = make_folder(root, args.processed, args.new, processed_dir)
            print(
                f"\nfolder with {args.processed} processed + {args.new} new files ({'PROCESSED_DIR=' + processed_dir if processed_dir else 'prefix marking'}), made in {time.perf_counter() - started:.1f} s"
            )
            db_name, postgres_url = create_postgres_database(server)
            try:
                for label, url in (("SQLite", f"sqlite:///{root.parent / (root.name + '.db')}"), ("Postgres", postgres_url)):
                    record_ledger(url, names)
                    elapsed, files = tick(root, url, processed_dir)
                    print(f"  {label:8} tick {elapsed:6.2f} s, requested {files} files")
            finally:
                drop_postgres_database(server, db_name)


if __name__ == "__main__":
    main()
