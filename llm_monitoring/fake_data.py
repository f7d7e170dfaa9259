"""Generated agent runs for dashboards and demos, through the same parser, pricing and evaluator as real logs.

    python -m llm_monitoring.fake_data --count 200 --hours 24 --feedback-rate 0.5 --good-ratio 0.65
    python -m llm_monitoring.fake_data --count 300 --seed 1          # reproducible
    python -m llm_monitoring.fake_data --count 50 --to-files logs     # run-log files for the real ingest
    python -m llm_monitoring.fake_data --purge                        # delete every generated run

Every run is a realistic pydantic-ai run log (written by `samples.make_run_log`) for one of four
provider/model pairs, with its token usage set to a size drawn between 500 and 22,000 input and
100 and 4,000 output tokens. The log's bytes are parsed, priced with genai-prices and evaluated
exactly as an ingested file would be, then stored with `origin = "fake"` so they can be told apart
and purged. Feedback goes on `--feedback-rate` of the runs, `--good-ratio` of it good.

Time window: runs start spread over the `--hours` before the window's end. Without `--seed` the
window ends now. With `--seed` it ends at the start of the current hour (UTC), so the same seed
gives the same runs, byte for byte and hash for hash, all hour long: running it again adds nothing,
and two databases filled with it hold the same data (only ids and the checks' `created_at`, the
time the evaluator ran, differ). `--end` sets the end explicitly.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from llm_monitoring.core.wording import plural
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.recompute import rebuild_every_daily_table
from llm_monitoring.samples import PROFILES, AgentProfile, make_run_log
from llm_monitoring.storage.bulk import RunToStore, store_runs
from llm_monitoring.storage.engine import Database, open_database
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.feedback import insert_feedback
from llm_monitoring.storage.runs import origin_run_days, purge_origin

FAKE_ORIGIN = "fake"
FAKE_REVIEWER = "fake-data"
INPUT_TOKENS = (500, 22_000)
OUTPUT_TOKENS = (100, 4_000)
STORE_BATCH = 500
# Runs start at least this long before the window's end, so that they have finished (and their
# feedback has been given) by then.
END_MARGIN = timedelta(minutes=5)


def _fake_profiles() -> tuple[AgentProfile, ...]:
    """The prototype's four provider/model pairs, with real provider ids and names genai-prices prices."""
    by_name = {profile.agent_name: profile for profile in PROFILES}
    return (
        replace(by_name["faq_agent"], provider="openai", model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18"),
        replace(by_name["docs_search"], provider="openai", model="gpt-4o", response_model="gpt-4o-2024-08-06"),
        replace(
            by_name["support_bot"],
            provider="anthropic",
            model="claude-3-5-sonnet-latest",
            response_model="claude-3-5-sonnet-20241022",
        ),
        replace(by_name["wikiagent"], provider="google-gla", model="gemini-1.5-pro", response_model="gemini-1.5-pro-002"),
    )


FAKE_PROFILES = _fake_profiles()

_GOOD_COMMENTS = (
    "Accurate and well sourced.",
    "Exactly what I needed.",
    "Clear answer, good references.",
    None,
)
_BAD_COMMENTS = (
    "Missed the point of the question.",
    "No references to the docs.",
    "Too long, and the steps are out of order.",
    "Wrong: the setting was renamed.",
)


@dataclass(frozen=True)
class FakeRunLog:
    name: str  # file name, also the tail of the stored filepath
    raw: bytes  # the run log as a file would hold it
    started: datetime


@dataclass(frozen=True)
class FakeFeedback:
    run_index: int
    is_good: bool
    comments: str | None
    reference_answer: str | None
    given_at: datetime


@dataclass(frozen=True)
class FakeDataset:
    run_logs: tuple[FakeRunLog, ...]
    feedback: tuple[FakeFeedback, ...]
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class FakeReport:
    stored: int
    already_stored: int
    priced: int
    feedback: int
    good_feedback: int
    days: frozenset[date] = frozenset()  # UTC days of the runs stored now


def window_end(seed: int | None, now: datetime | None = None) -> datetime:
    """Now, or with a seed the start of the current UTC hour (the same for a whole hour)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(minute=0, second=0, microsecond=0) if seed is not None else now


def build_dataset(
    count: int,
    hours: float,
    *,
    seed: int | None = None,
    end: datetime | None = None,
    feedback_rate: float = 0.5,
    good_ratio: float = 0.65,
) -> FakeDataset:
    """`count` run logs starting spread over the `hours` before `end`, and the feedback to give them."""
    if count < 0 or hours <= 0:
        raise ValueError("count must be >= 0 and hours > 0")
    if not (0 <= feedback_rate <= 1 and 0 <= good_ratio <= 1):
        raise ValueError("feedback rate and good ratio must be between 0 and 1")
    rng = random.Random(seed) if seed is not None else random.Random()
    end = (end or window_end(seed)).astimezone(UTC)
    start = end - timedelta(hours=hours)
    span = max((end - END_MARGIN - start).total_seconds(), 0.0)
    tag = f"s{seed}" if seed is not None else f"r{rng.getrandbits(32):08x}"
    run_logs = []
    for index in range(count):
        # Evenly spread with jitter: even gaps look synthetic on a time series, pure chance leaves holes.
        started = start + timedelta(seconds=span * (index + rng.random()) / max(count, 1))
        started = started.replace(microsecond=started.microsecond // 1000 * 1000)
        profile = rng.choice(FAKE_PROFILES)
        run_log = make_run_log(rng, started, profile=profile)
        output_tokens = _log_uniform(rng, *OUTPUT_TOKENS)
        _set_usage(run_log, _log_uniform(rng, *INPUT_TOKENS), output_tokens)
        _delay_final_response(run_log, timedelta(seconds=output_tokens / rng.uniform(40, 150)))
        name = f"{profile.agent_name}_{started:%Y%m%d_%H%M%S}_{tag}_{index:05d}.json"
        run_logs.append(FakeRunLog(name, json.dumps(run_log, indent=2).encode("utf-8"), started))
    return FakeDataset(tuple(run_logs), _plan_feedback(rng, run_logs, feedback_rate, good_ratio, end), start, end)


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    """Most runs are small and a few are large, as in real traffic."""
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _set_usage(run_log: dict[str, Any], input_tokens: int, output_tokens: int) -> None:
    """Rescale the log's usage to the given totals, keeping its split over requests and its cache share.

    A streamed run repeats its final response (same provider_response_id): the copies get the same
    usage, and the parser counts it once, so the totals match the top-level usage.
    """
    responses: dict[str, list[dict[str, Any]]] = {}
    for message in run_log["messages"]:
        if message.get("kind") == "response":
            responses.setdefault(message["provider_response_id"], []).append(message)
    first_of_each = [copies[0] for copies in responses.values()]
    new_inputs = _split(input_tokens, [max(m["usage"]["input_tokens"], 1) for m in first_of_each])
    new_outputs = _split(output_tokens, [max(m["usage"]["output_tokens"], 1) for m in first_of_each])
    totals = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0}
    for copies, new_input, new_output in zip(responses.values(), new_inputs, new_outputs, strict=True):
        old = copies[0]["usage"]
        cached = round(new_input * old["cache_read_tokens"] / max(old["input_tokens"], 1))
        usage = {"input_tokens": new_input, "cache_write_tokens": 0, "cache_read_tokens": cached, "output_tokens": new_output}
        for message in copies:
            message["usage"] = dict(usage)
        for key in totals:
            totals[key] += usage[key]
    run_log["usage"] = {**run_log["usage"], **totals}


def _delay_final_response(run_log: dict[str, Any], generation: timedelta) -> None:
    """Generating the answer takes time in proportion to its tokens: the final response comes that much later."""
    responses = [message for message in run_log["messages"] if message.get("kind") == "response"]
    final_id = responses[-1]["provider_response_id"]
    for message in responses:
        if message["provider_response_id"] == final_id:
            moment = datetime.fromisoformat(message["timestamp"]) + generation
            message["timestamp"] = moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat()


def _split(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole numbers that add up to it."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights]
    parts[-1] += total - sum(parts)
    return parts


def _plan_feedback(
    rng: random.Random, run_logs: Sequence[FakeRunLog], feedback_rate: float, good_ratio: float, end: datetime
) -> tuple[FakeFeedback, ...]:
    # Exact shares rather than coin flips: --feedback-rate 0.5 on 300 runs gives 150 rows, not "about" 150.
    rated = sorted(rng.sample(range(len(run_logs)), round(len(run_logs) * feedback_rate)))
    good = set(rng.sample(rated, round(len(rated) * good_ratio)))
    planned = []
    for index in rated:
        is_good = index in good
        comments = rng.choice(_GOOD_COMMENTS if is_good else _BAD_COMMENTS)
        reference = None if is_good or rng.random() < 0.5 else "See the linked documentation page; the answer should quote it."
        given_at = min(run_logs[index].started + timedelta(minutes=rng.uniform(5, 180)), end)
        planned.append(FakeFeedback(index, is_good, comments, reference, given_at.replace(microsecond=0)))
    return tuple(planned)


def to_run_to_store(run_log: FakeRunLog) -> RunToStore:
    """Parse, price and evaluate the log's bytes exactly as the ingest does, marked as fake."""
    run = run_from_bytes(run_log.raw, f"fake://{run_log.name}", origin=FAKE_ORIGIN)
    # "Stored" a few seconds after the run finished, as the sensor would; fixed for a seed.
    return replace(run, created_at=(run.record.run_finished_at or run_log.started) + timedelta(seconds=5))


def store_dataset(database: Database, dataset: FakeDataset) -> FakeReport:
    """Store the runs (and feedback on the ones stored now); content already stored is left alone."""
    log_ids: dict[int, int] = {}
    already = priced = 0
    for start in range(0, len(dataset.run_logs), STORE_BATCH):
        # Built batch by batch: memory holds one batch of parsed runs, whatever the count.
        batch = [to_run_to_store(run_log) for run_log in dataset.run_logs[start : start + STORE_BATCH]]
        result = store_runs(database, batch)
        already += len(result.already_stored)
        for offset, run in enumerate(batch):
            if run.content_hash in result.inserted:
                log_ids[start + offset] = result.inserted[run.content_hash]
                priced += run.price.priced
    rows = [
        {
            "log_id": log_ids[planned.run_index],
            "is_good": planned.is_good,
            "comments": planned.comments,
            "reference_answer": planned.reference_answer,
            "reviewer": FAKE_REVIEWER,
            "created_at": planned.given_at,
        }
        for planned in dataset.feedback
        if planned.run_index in log_ids
    ]
    insert_feedback(database, rows)
    return FakeReport(
        stored=len(log_ids),
        already_stored=already,
        priced=priced,
        feedback=len(rows),
        good_feedback=sum(1 for row in rows if row["is_good"]),
        days=frozenset(dataset.run_logs[index].started.astimezone(UTC).date() for index in log_ids),
    )


def write_files(folder: str | Path, dataset: FakeDataset) -> list[Path]:
    """Write the run logs as files, for the sensor or `llm-monitoring ingest` to pick up."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run_log in dataset.run_logs:
        path = folder / run_log.name
        # Write then rename: the sensor must never see a half-written file.
        partial = folder / f".{run_log.name}.part"
        partial.write_bytes(run_log.raw)
        partial.replace(path)
        paths.append(path)
    return paths


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


DESCRIPTION = "Generate fake agent runs (priced and evaluated like real logs) into DATABASE_URL, or as log files."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-monitoring fake-data", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `llm-monitoring fake-data` (and of its alias `python -m llm_monitoring.fake_data`)."""
    parser.add_argument("--count", type=_count, default=200, help="number of runs (default 200)")
    parser.add_argument("--hours", type=_positive, default=24.0, help="spread run start times over the last N hours (default 24)")
    parser.add_argument("--feedback-rate", type=_rate, default=0.5, help="share of runs that get feedback (default 0.5)")
    parser.add_argument("--good-ratio", type=_rate, default=0.65, help="share of that feedback that is good (default 0.65)")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same data (the window then ends at the current hour)")
    parser.add_argument("--end", type=_moment, default=None, help="ISO time the window ends at (default: now, or the hour with --seed)")
    parser.add_argument("--to-files", metavar="DIR", default=None, help="write run-log files into DIR instead of the database")
    parser.add_argument("--purge", action="store_true", help="delete all fake runs with their checks and feedback, then exit")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m llm_monitoring.fake_data ...`: the seed's name of `llm-monitoring fake-data ...`."""
    from llm_monitoring import cli

    return cli.main(["fake-data", *(sys.argv[1:] if argv is None else argv)])


def run_command(args: argparse.Namespace) -> int:
    """`llm-monitoring fake-data`: store a fake dataset, write it as files, or purge it."""
    try:
        if args.purge:
            return _purge()
        dataset = build_dataset(
            args.count,
            args.hours,
            seed=args.seed,
            end=args.end,
            feedback_rate=args.feedback_rate,
            good_ratio=args.good_ratio,
        )
        window = f"{dataset.window_start:%Y-%m-%d %H:%M} to {dataset.window_end:%Y-%m-%d %H:%M} UTC"
        if args.to_files:
            paths = write_files(args.to_files, dataset)
            print(
                f"Wrote {len(paths)} run-log files into {args.to_files}/ (runs started {window}). "
                "The sensor or `llm-monitoring ingest` stores them like any log (origin 'file'); "
                "feedback is only generated when writing to the database."
            )
            return 0
        with open_database() as database:
            report = store_dataset(database, dataset)
            # The dashboards read whole days from the daily tables, which the ingest keeps and this does not.
            rebuild_every_daily_table(database, report.days)
            where = database.display_url
    except (DatabaseUnavailable, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"Stored {report.stored} fake runs ({report.priced} priced, {report.already_stored} already stored) "
        f"started {window}, with {report.feedback} feedback rows ({report.good_feedback} good), into {where}; "
        f"daily tables rebuilt for {plural(len(report.days), 'day')}"
    )
    return 0


def _purge() -> int:
    with open_database() as database:
        days = origin_run_days(database, FAKE_ORIGIN)
        deleted = purge_origin(database, FAKE_ORIGIN)
        rebuild_every_daily_table(database, days)
        where = database.display_url
    print(
        f"Deleted {deleted['llm_logs']} fake runs, {deleted['eval_checks']} checks and {deleted['feedback']} feedback rows from {where}; "
        f"daily tables rebuilt for {plural(len(days), 'day')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
