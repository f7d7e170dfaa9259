"""Ingest throughput benchmark: the one-shot runner against the floor, on SQLite and on Postgres.

    uv run python benchmarks/ingest.py --count 4000

Generates N realistic logs with the project's sample-log writer (sizes ~5/30/90 KB, several models,
tool calls), then for each database:
- floor: read every file, json.loads it, and load (filepath, raw text) into one table in one
  transaction (COPY on Postgres, one executemany on SQLite), in this process;
- runner: `python -m llm_monitoring.runner` in a fresh process on the N files, and on one file;
  marginal time = time(N) - time(1); start-up = time(1).
Each figure is the median of --repeat rounds (default 3), each on fresh copies and databases.
Prints files/s, MB/s, start-up, peak memory and the marginal ratio to the floor. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_monitoring.samples import write_sample_logs  # noqa: E402
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database  # noqa: E402


def generate(folder: Path, count: int) -> tuple[list[Path], int]:
    paths = write_sample_logs(folder, count, seed=7, sizes_kb=(5, 30, 90))
    return paths, sum(path.stat().st_size for path in paths)


def floor_postgres(paths: list[Path], url: str) -> float:
    with psycopg.connect(url) as connection:
        connection.execute("DROP TABLE IF EXISTS floor_logs")
        connection.execute("CREATE TABLE floor_logs (filepath text, raw_json text)")
        connection.commit()
        os.sync()
        started = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy("COPY floor_logs (filepath, raw_json) FROM STDIN") as copy:
            for path in paths:
                text = path.read_bytes().decode("utf-8")
                json.loads(text)
                copy.write_row((str(path), text))
        connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE floor_logs")
        connection.commit()
    return elapsed


def floor_sqlite(paths: list[Path], db_path: Path) -> float:
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE floor_logs (filepath text, raw_json text)")
    os.sync()
    started = time.perf_counter()
    rows = []
    for path in paths:
        text = path.read_bytes().decode("utf-8")
        json.loads(text)
        rows.append((str(path), text))
    with connection:
        connection.executemany("INSERT INTO floor_logs VALUES (?, ?)", rows)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def run_runner(logs: Path, database_url: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `python -m llm_monitoring.runner` process."""
    env = {**os.environ, "LOGS_DIR": str(logs), "DATABASE_URL": database_url, "SETTLE_SECONDS": "0"}
    env.pop("DAGSTER_HOME", None)
    os.sync()  # earlier writes (copies, other databases) must not be flushed on this run's time
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_monitoring.runner"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    output = process.stdout.read().decode() + process.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"runner failed:\n{output}")
    return elapsed, usage.ru_maxrss / 1024


def peak_tree_memory(logs: Path, database_url: str) -> float | None:
    """Peak of the summed PSS (MB) of the runner and its worker processes, sampled every 50 ms in an
    untimed run (sampling reads the processes' page tables). None where /proc has no smaps_rollup."""
    if not Path(f"/proc/{os.getpid()}/smaps_rollup").exists():
        return None
    env = {**os.environ, "LOGS_DIR": str(logs), "DATABASE_URL": database_url, "SETTLE_SECONDS": "0"}
    env.pop("DAGSTER_HOME", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_monitoring.runner"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, sum(_pss_kb(pid) for pid in _process_tree(process.pid)))
        time.sleep(0.05)
    return peak / 1024


def _process_tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(grandchild for child in children for grandchild in _process_tree(int(child)))]


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def copy_logs(paths: list[Path], target: Path) -> Path:
    target.mkdir(parents=True)
    for path in paths:
        shutil.copy(path, target / path.name)
    return target


def bench(label: str, paths: list[Path], total_bytes: int, work: Path, url_factory, floor, repeat: int) -> None:
    """Each figure is the median of `repeat` rounds, each on fresh copies and fresh databases:
    the marginal time is a difference of two runs, and one noisy start-up would swing it."""
    startups, totals, floors, peaks = [], [], [], []
    for round_ in range(repeat):
        url_one, url_all, floor_arg = url_factory()
        one = copy_logs(paths[:1], work / f"{label}-one-{round_}")
        startups.append(run_runner(one, url_one)[0])
        many = copy_logs(paths, work / f"{label}-all-{round_}")
        elapsed, rss = run_runner(many, url_all)
        totals.append(elapsed)
        peaks.append(rss)
        floors.append(floor(paths, floor_arg))
        shutil.rmtree(one)
        shutil.rmtree(many)
    url_memory = url_factory()[1]
    many = copy_logs(paths, work / f"{label}-memory")
    tree_memory = peak_tree_memory(many, url_memory)
    shutil.rmtree(many)
    startup, elapsed, floor_seconds = median(startups), median(totals), median(floors)
    marginal = elapsed - startup
    count, megabytes = len(paths), total_bytes / 1e6
    print(f"\n{label}: {count} files, {megabytes:.1f} MB, median of {repeat} rounds")
    print(f"  runner total      {elapsed:7.2f} s   {count / elapsed:7.0f} files/s   {megabytes / elapsed:6.1f} MB/s   {spread(totals)}")
    print(f"  start-up (1 file) {startup:7.2f} s   {spread(startups)}")
    print(f"  marginal          {marginal:7.2f} s   {count / marginal:7.0f} files/s   {megabytes / marginal:6.1f} MB/s")
    print(f"  floor             {floor_seconds:7.2f} s   {count / floor_seconds:7.0f} files/s   {spread(floors)}")
    print(f"  marginal / floor  {marginal / floor_seconds:7.2f}x")
    print(f"  peak RSS          {max(peaks):7.0f} MB   (largest process)")
    if tree_memory is not None:
        print(f"  peak memory       {tree_memory:7.0f} MB   (PSS of the runner and its workers together, untimed run)")


def spread(values: list[float]) -> str:
    return f"(rounds {min(values):.2f}-{max(values):.2f} s)" if len(values) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per database; figures are medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmmon-bench-") as temp:
        work = Path(temp)
        started = time.perf_counter()
        paths, total_bytes = generate(work / "generated", args.count)
        print(f"generated {len(paths)} logs ({total_bytes / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s; {os.cpu_count()} cores")
        if args.only in (None, "sqlite"):

            def sqlite_urls():
                tag = uuid.uuid4().hex[:8]
                return f"sqlite:///{work / f'one-{tag}.db'}", f"sqlite:///{work / f'all-{tag}.db'}", work / f"floor-{tag}.db"

            bench("SQLite", paths, total_bytes, work, sqlite_urls, floor_sqlite, args.repeat)
        if args.only in (None, "postgres"):
            # Plain postgresql:// URLs: the floor connects with psycopg itself.
            server = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            names: list[str] = []

            def postgres_urls():
                (one_name, one_url), (all_name, all_url) = create_postgres_database(server), create_postgres_database(server)
                names.extend([one_name, all_name])
                return one_url, all_url, all_url

            try:
                bench("Postgres", paths, total_bytes, work, postgres_urls, floor_postgres, args.repeat)
            finally:
                for name in names:
                    drop_postgres_database(server, name)


if __name__ == "__main__":
    main()
