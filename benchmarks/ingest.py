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

    uv run python benchmarks/ingest.py --count 4000 --prefill 100000 --prefill 1000000 [--late]

With --prefill (Postgres only): the runner stores the same files, dated yesterday and today, into an
empty database and into databases already holding N runs of the 90 days before (checks, feedback,
ledger rows, daily tables; benchmarks/history_template.py builds each once as a template and every
round starts from a fresh copy of it). --late adds files dated 30 days back, inside that history
(late-arriving logs: the days the ingest rebuilds hold the history's runs too). Prints each total,
its ratio to the empty database's and the time of each step of the job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_monitoring.samples import write_sample_logs  # noqa: E402
from llm_monitoring_tests.conftest import create_postgres_database, drop_postgres_database  # noqa: E402


def generate(folder: Path, count: int, start: datetime | None = None) -> tuple[list[Path], int]:
    paths = write_sample_logs(folder, count, seed=7, sizes_kb=(5, 30, 90), start=start)
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


@dataclass(frozen=True)
class RunnerRun:
    seconds: float
    cpu_seconds: float  # user + system of the runner and its worker processes
    peak_rss_mb: float  # of the largest process
    output: str


def run_runner(logs: Path, database_url: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `python -m llm_monitoring.runner` process."""
    run = run_runner_output(logs, database_url)
    return run.seconds, run.peak_rss_mb


def run_runner_output(logs: Path, database_url: str, *, debug: bool = False) -> RunnerRun:
    """One runner process, timed, with its output; `debug` makes it log every step's time."""
    env = {**os.environ, "LOGS_DIR": str(logs), "DATABASE_URL": database_url, "SETTLE_SECONDS": "0"}
    env.pop("DAGSTER_HOME", None)
    if debug:
        env["MONITORING_DEBUG"] = "1"
    os.sync()  # earlier writes (copies, other databases) must not be flushed on this run's time
    started = time.perf_counter()
    # Output to a file: a pipe nobody reads while the process runs would block a verbose one.
    with tempfile.TemporaryFile() as output_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_monitoring.runner"], cwd=ROOT, env=env, stdout=output_file, stderr=output_file
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        output_file.seek(0)
        output = output_file.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"runner failed:\n{output}")
    return RunnerRun(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)


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


# ---------------------------------------------------------------------------- into a large database

STEP_TIME = re.compile(r'Finished execution of step "([^"]+)" in ([\d.]+)(ms|s)\b')
STEPS_TIME = re.compile(r"Finished steps in process \(pid: \d+\) in ([\d.]+)(ms|s)\b")
AGGREGATES_TIME = re.compile(r"daily aggregates of .* rebuilt in ([\d.]+) s")
ASSET_PREFIXES = ("daily_eval_summary_", "daily_usage_", "judge_verdicts_", "log_files_")
ROUND_DATABASE = "llmmon_bench_ingest_round"


def phases(output: str) -> dict[str, float]:
    """Seconds per step of the job (gates by name), the steps together, and the aggregates' share of the ingest step."""

    def seconds(value: str, unit: str) -> float:
        return float(value) / (1000 if unit == "ms" else 1)

    found: dict[str, float] = {}
    for step, value, unit in STEP_TIME.findall(output):
        for prefix in ASSET_PREFIXES:
            step = step.removeprefix(prefix)
        found[step] = seconds(value, unit)
    if match := STEPS_TIME.search(output):
        found["steps"] = seconds(*match.groups())
    if match := AGGREGATES_TIME.search(output):
        found["aggregates"] = float(match.group(1))
    return found


class BackendCpu:
    """CPU seconds of the Postgres backends serving one database (and their parallel workers), read
    from /proc every 20 ms while the block runs: on a machine shared with other work, CPU time moves
    far less than wall time. A backend that lives less than 20 ms is missed."""

    def __init__(self, database: str) -> None:
        self._tag = f" {database} "
        self._ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            leaders = set(self._ticks)
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    ours = self._tag in title or any(f"parallel worker for PID {pid}" in title for pid in leaders)
                    if ours and title.startswith("postgres: "):
                        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                        self._ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime + stime
                except OSError:
                    continue


def database_stats(server: str, name: str) -> dict[str, float]:
    """Blocks and rows the database's backends touched since it was created (pg_stat_database)."""
    with psycopg.connect(server) as connection:
        hit, read, returned, fetched = connection.execute(
            "SELECT blks_hit, blks_read, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return {"blocks": float(hit + read), "blocks_read": float(read), "rows_read": float(returned + fetched)}


def day_start(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)


def bench_prefilled(args: argparse.Namespace, work: Path) -> None:
    """The runner on the same files into an empty database and into databases holding a history."""
    from benchmarks.history_template import History, copy_template, drop_database, ensure_template

    server = args.postgres.replace("postgresql+psycopg://", "postgresql://")
    # New runs from yesterday 09:00 to today 09:00, as in a team's daily ingest: the gates' look-back
    # (the last 7 days) then covers the history's last days, as it would.
    first_new_day = datetime.now(UTC).date() - timedelta(days=1)
    file_sets = {"recent": day_start(first_new_day, 9)}
    if args.late:
        file_sets["late"] = day_start(first_new_day - timedelta(days=30), 9)
    generated = {}
    for label, start in file_sets.items():
        paths, total_bytes = generate(work / f"generated-{label}", args.count, start)
        generated[label] = paths
        print(f"{label}: {len(paths)} logs ({total_bytes / 1e6:.1f} MB) from {start:%Y-%m-%d %H:%M} UTC over 24 hours")
    sizes = [0, *sorted(set(args.prefill))]
    templates = {size: ensure_template(server, History(size, first_new_day)) for size in sizes}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    copies: list[float] = []
    try:
        for round_ in range(args.repeat):
            for label, paths in generated.items():
                for size in sizes:
                    copies.append(copy_template(server, templates[size], ROUND_DATABASE))
                    logs = copy_logs(paths, work / f"prefill-{label}-{size}-{round_}")
                    before = database_stats(server, ROUND_DATABASE)
                    with BackendCpu(ROUND_DATABASE) as server_cpu:
                        run = run_runner_output(logs, database_url_of(server, ROUND_DATABASE), debug=True)
                    after = database_stats(server, ROUND_DATABASE)
                    shutil.rmtree(logs)
                    figures = {
                        "total": run.seconds,
                        "runner_cpu": run.cpu_seconds,
                        "server_cpu": server_cpu.seconds,
                        **{key: after[key] - before[key] for key in after},
                        **phases(run.output),
                    }
                    results.setdefault((label, size), []).append(figures)
                    print(f"  round {round_ + 1} {label:<6} {size:>9,} runs: {run.seconds:6.2f} s  " + _phase_line(figures))
    finally:
        drop_database(server, ROUND_DATABASE)
        if not args.keep_templates:
            for name in templates.values():
                drop_database(server, name)
    print(
        f"\nPostgres, {args.count} files, median of {args.repeat} rounds; each round starts from a copy of the template "
        f"(CREATE DATABASE ... TEMPLATE, median {median(copies):.1f} s, untimed)"
    )
    compared = ("total", "runner_cpu", "server_cpu", "blocks")
    print(f"  {'files':<7}{'history':>16}  " + "  ".join(f"{key:>10} {'x empty':>7}" for key in compared) + "  total's rounds")
    for label in generated:
        empty = _medians(results[(label, 0)])
        for size in sizes:
            rounds = results[(label, size)]
            medians = _medians(rounds)
            history = f"{size:,} runs" if size else "empty"
            cells = "  ".join(_cell(key, medians[key], medians[key] / empty[key] if empty[key] else 0.0) for key in compared)
            print(f"  {label:<7}{history:>16}  {cells}  {spread([f['total'] for f in rounds])}")
            print(f"  {'':<25}{_phase_line({key: value for key, value in medians.items() if key not in compared})}")
    if args.keep_templates:
        print("kept templates: " + ", ".join(templates.values()))


COUNTS = ("blocks", "blocks_read", "rows_read")


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for figures in rounds for key in figures}
    return {key: median(figures.get(key, 0.0) for figures in rounds) for key in keys}


def _cell(key: str, value: float, ratio: float) -> str:
    shown = f"{value:,.0f}" if key in COUNTS else f"{value:.2f} s"
    return f"{shown:>10} {ratio:6.2f}x"


def _phase_line(figures: dict[str, float]) -> str:
    order = ["runner_cpu", "server_cpu", *COUNTS, "steps", "ingest_logs", "aggregates"]
    keys = [key for key in order if key in figures] + sorted(key for key in figures if key not in order and key != "total")
    return "  ".join(f"{key} {figures[key]:,.0f}" if key in COUNTS else f"{key} {figures[key]:.2f}" for key in keys)


def database_url_of(server: str, name: str) -> str:
    from benchmarks.app_queries import database_url

    return database_url(server, name)


def spread(values: list[float]) -> str:
    return f"(rounds {min(values):.2f}-{max(values):.2f} s)" if len(values) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per database; figures are medians")
    parser.add_argument(
        "--prefill", type=int, action="append", default=[], metavar="RUNS", help="also into a database of RUNS runs (repeatable; Postgres)"
    )
    parser.add_argument("--late", action="store_true", help="with --prefill: also files dated inside the history")
    parser.add_argument("--keep-templates", action="store_true", help="with --prefill: keep the template databases for the next time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmmon-bench-") as temp:
        work = Path(temp)
        if args.prefill:
            bench_prefilled(args, work)
            return
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
