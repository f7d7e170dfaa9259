"""The `llm-monitoring` command: demo, ingest, inspect, watch, summary, retry-quarantined, feedback, retention, judge,
fake-data, dashboards.

`python -m llm_monitoring.runner` and `python -m llm_monitoring.fake_data` are aliases of its subcommands.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import logging
import sys
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from llm_monitoring import fake_data
from llm_monitoring.config import InvalidSetting, LogsDirUnusable, get_settings, is_bucket_url
from llm_monitoring.core.wording import plural
from llm_monitoring.file_names import name_text
from llm_monitoring.grafana import build_dashboards
from llm_monitoring.ingest_runs import IngestFailed, run_ingest, watch
from llm_monitoring.judge_runs import JudgeRunFailed
from llm_monitoring.retention_runs import RetentionFailed
from llm_monitoring.samples import write_sample_logs
from llm_monitoring.sources import LocalDirectorySource, S3Source, SourceUnavailable, entry_key, open_source
from llm_monitoring.storage.engine import Database, open_database
from llm_monitoring.storage.errors import DatabaseUnavailable
from llm_monitoring.storage.ledger import resolve_ingest_errors
from llm_monitoring.storage.objects import forget_quarantined, quarantined_objects
from llm_monitoring.storage.runs import has_runs_table, run_summary

DEMO_RUNS = 24


def format_summary(database: Database) -> str:
    summary = run_summary(database)
    lines = [
        f"Database: {database.display_url}",
        f"Runs: {summary['runs']}   tokens in {summary['input_tokens']:,} (cache read {summary['cache_read_tokens']:,}), "
        f"out {summary['output_tokens']:,}",
        "Cost by model (USD):",
    ]
    for (provider, model), entry in sorted(summary["by_model"].items(), key=lambda item: -item[1]["cost"]):
        unpriced = f", {entry['unpriced']} unpriced" if entry["unpriced"] else ""
        lines.append(f"  {provider or '?'}/{model or '?'}: {plural(entry['runs'], 'run')}, ${entry['cost']:.6f}{unpriced}")
    lines.append("Check pass rates (not-applicable runs excluded):")
    for name, entry in sorted(summary["checks"].items()):
        rate = f"{100 * entry['passed'] / entry['applicable']:.0f}%" if entry["applicable"] else "n/a"
        lines.append(f"  {name:<20} {rate:>5}  ({entry['passed']:,} passed of {entry['applicable']:,} applicable)")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    if is_bucket_url(settings.logs_dir):
        raise LogsDirUnusable("LOGS_DIR is a bucket; the demo writes its sample logs into a local folder: unset LOGS_DIR to run it")
    paths = write_sample_logs(settings.logs_dir, args.count, seed=args.seed, sizes_kb=(5, 30, 90))
    print(f"Wrote {len(paths)} sample run logs into {settings.logs_dir}/")
    outcome = run_ingest()
    print(f"Ingest: {outcome.line()}\n")
    with open_database(ensure_schema=False) as database:
        print(format_summary(database))
    print(
        "\nNext:\n"
        "  uv run dagster dev            # Dagster UI on http://localhost:3000: lineage, runs; the sensor ingests new files in logs/\n"
        "  uv run llm-monitoring watch   # or ingest from the command line as files arrive\n"
        "  uv run pytest                 # the test suite"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    try:
        source = open_source() if args.files else None
        names = [source.name_of_path(argument) for argument in args.files] if source else []
    except ValueError as error:  # a path outside LOGS_DIR, or a bad folder setting: nothing is touched
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcome = run_ingest(names or None)
    print(outcome.line())
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """What the ingest would store from each file (format, runs, tokens, cost, tool calls); writes nothing."""
    from llm_monitoring.inspection import inspect_paths, report_lines

    inspections = inspect_paths(args.files)
    for inspection in inspections:
        print("\n".join(report_lines(inspection)))
    return 1 if any(inspection.error for inspection in inspections) else 0


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        watch(args.poll)
    except KeyboardInterrupt:
        print("stopped")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    with open_database(ensure_schema=False) as database:
        if not has_runs_table(database):
            print(f"Database: {database.display_url}\nNo runs yet: the first ingest creates the tables (try `llm-monitoring demo`).")
            return 0
        print(format_summary(database))
    return 0


def cmd_retry_quarantined(args: argparse.Namespace) -> int:
    """Put quarantined files back into the log folder so the next ingest tries them again."""
    source = open_source()
    if isinstance(source, S3Source):
        return retry_quarantined_objects(source, args)
    assert isinstance(source, LocalDirectorySource)
    names = source.list_quarantined()
    if args.names:
        unknown = sorted(set(args.names) - set(names))
        if unknown:
            print(f"not in quarantine, left alone: {', '.join(unknown)}", file=sys.stderr)
        names = [name for name in names if name in set(args.names)]
    if not names:
        print("0 quarantined files put back")
        return 0
    # The database first: if it is down, no file moves without its error being marked resolved.
    with open_database() as database:
        hashes = []
        for name in names:
            hashes.append(entry_key(source.quarantined_path(name)))
            print(f"restored {name_text(source.restore_quarantined(name))}")
        # The cause is said to be fixed: the errors no longer count as open (quality gate, summary);
        # a file that fails again re-opens its row.
        resolve_ingest_errors(database, hashes)
    print(f"{len(names)} quarantined files put back; the next ingest or sensor tick retries them")
    if names and args.ingest:
        print(run_ingest().line())
    return 0


def retry_quarantined_objects(source: S3Source, args: argparse.Namespace) -> int:
    """A bucket's quarantined objects stay where they are: forgetting them in the ledger retries them."""
    with open_database() as database:
        records = quarantined_objects(database, source.bucket, source.prefix)
        if args.names:
            wanted = set(args.names)
            unknown = sorted(wanted - {source.name_of(record.key) for record in records})
            if unknown:
                print(f"not quarantined, left alone: {', '.join(unknown)}", file=sys.stderr)
            records = [record for record in records if source.name_of(record.key) in wanted]
        forget_quarantined(database, source.bucket, records)
    for record in records:
        print(f"retrying s3://{source.bucket}/{record.key}")
    print(f"{plural(len(records), 'quarantined object')} put back; the next ingest or sensor tick retries them")
    if records and args.ingest:
        print(run_ingest().line())
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    """`feedback LOG_ID --good|--bad ...`, `feedback import FILE`, `feedback list [LOG_ID]`."""
    from llm_monitoring.feedback import FeedbackError, import_feedback, list_feedback, save_feedback

    parser: argparse.ArgumentParser = args.feedback_parser
    target, extra = args.target, args.extra
    try:
        with open_database() as database:
            if target == "import":
                if extra is None:
                    parser.error("feedback import needs a FILE (.csv or .jsonl)")
                report = import_feedback(database, extra)
                for row_error in report.errors:
                    print(f"{extra}: {row_error}", file=sys.stderr)
                print(f"{extra}: {report.line()}")
                return 1 if report.errors else 0
            if target == "list":
                log_id = _log_id(parser, extra) if extra is not None else None
                entries = list_feedback(database, log_id, reviewer=args.reviewer, limit=args.limit)
                for entry in entries:
                    mark = "good" if entry.is_good else "bad "
                    who = f" by {entry.reviewer}" if entry.reviewer else ""
                    comment = "  " + " ".join(entry.comments.split()) if entry.comments else ""
                    print(f"#{entry.id}  run #{entry.log_id}  {mark}{who}  {entry.created_at:%Y-%m-%d %H:%M}{comment}")
                print(f"{len(entries)} feedback shown")
                return 0
            if extra is not None:
                parser.error(f"unexpected argument {extra!r}")
            if args.is_good is None:
                parser.error("say --good or --bad")
            log_id = _log_id(parser, target)
            feedback_id = save_feedback(
                database, log_id, args.is_good, comments=args.comment, reference_answer=args.reference, reviewer=args.reviewer
            )
            print(f"feedback #{feedback_id} stored for run #{log_id} ({'good' if args.is_good else 'bad'})")
            return 0
    except (FeedbackError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def cmd_retention(args: argparse.Namespace) -> int:
    """Apply RETENTION_DAYS / RETENTION_RAW_DAYS now (the job the daily schedule runs), or show what it would delete."""
    from llm_monitoring.retention_runs import run_retention

    report = run_retention(dry_run=args.dry_run)
    for line in report.lines():
        print(line)
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """`judge estimate|run [--judge NAME] [--from DAY --to DAY]`: LLM judges over stored runs."""
    from llm_monitoring import judging
    from llm_monitoring.core.judges import JudgeConfigError, select_judges
    from llm_monitoring.judge_runs import judge_days, run_judges

    if args.first and args.last and args.last < args.first:
        args.judge_parser.error(f"--to {args.last} is before --from {args.first}")
    try:
        judges = select_judges(judging.load_judges(), args.judge or [])
    except JudgeConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not judges:
        print("no judges declared: write judges.yaml in this folder or set JUDGES_FILE (see docs/judges.md)", file=sys.stderr)
        return 1
    with open_database() as database:
        days = judge_days(database, args.first, args.last)
        if days is None:
            print("no runs to judge: no stored run on a partition day in that range")
            return 0
        if days.runs_left_out and not (args.first or args.last):
            print(
                f"note: {plural(days.runs_left_out, 'stored run')} outside the daily partitions (undated, or before "
                "HISTORY_START_DATE) not judged"
            )
        if args.action == "estimate":
            estimates = judging.estimate(database, judges, days.start, days.end)
    if args.action == "estimate":
        print(f"Estimate for {days.label()} (nothing sent):")
        for entry in estimates:
            print(f"  {entry.line()}")
        priced = [entry.cost for entry in estimates if entry.cost is not None]
        unknown = len(estimates) - len(priced)
        print(f"Total estimated cost: ${sum(priced, Decimal(0)):.4f} USD" + (f" (and {unknown} judges without a price)" if unknown else ""))
        return 0
    outcome = run_judges([judge.name for judge in judges], days)
    m = outcome.metadata
    print(
        f"Judged {days.label()} (run {outcome.run_id}): {m.get('runs_judged', 0)} runs judged, {m.get('skipped_cached', 0)} already "
        f"judged (not sent), {m.get('sampled_out', 0)} sampled out, {m.get('failed_calls', 0)} failed calls, "
        f"{m.get('budget_skipped', 0)} left by max_cost_usd; {m.get('input_tokens', 0):,} tokens in, {m.get('output_tokens', 0):,} out, "
        f"${m.get('cost_usd', 0):.6f}"
    )
    for judge in judges:
        kappa = m.get(f"{judge.name}_kappa")
        pairs = m.get(f"{judge.name}_pairs_with_feedback", 0)
        shown = f"kappa {kappa:.2f}" if isinstance(kappa, float) else "kappa undefined"
        print(f"  {judge.name}: agreement with reviewers over {plural(int(pairs or 0), 'rated run')}: {shown}")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def _log_id(parser: argparse.ArgumentParser, text: str) -> int:
    from llm_monitoring.feedback import InvalidFeedback, parse_id

    try:
        return parse_id(text, "LOG_ID")
    except InvalidFeedback as error:
        parser.error(str(error))


def _list_limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1,000,000, got {text!r}")
    return int(text)


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        # Dagster's per-event logging drowns the one line per pass that a watcher wants, and the HTTP
        # clients' line per request the one line per judge that `judge run` prints.
        for name in ("dagster", "alembic", "httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)


def skip_final_collection() -> None:
    """At exit, skip the interpreter's last cycle collection, which walks every object Dagster, pandas
    and SQLAlchemy built (about a second of every command). Nothing of ours needs it: connections and
    temporary folders are closed explicitly. Registered at exit only, so calling main() from Python
    changes nothing until the interpreter ends."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def escape_unprintable_output() -> None:
    """Print what the output's encoding cannot show as escapes (a file name that is not UTF-8 reaches
    Python as lone surrogates) rather than end the command with a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-monitoring", description="Monitor, price and evaluate LLM agent runs.")
    parser.add_argument("--debug", action="store_true", help="verbose logs (also DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="write sample logs into LOGS_DIR, ingest them and print a summary")
    demo.add_argument("--count", type=int, default=DEMO_RUNS)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_demo)

    ingest = commands.add_parser("ingest", help="ingest pending log files once (the same job the sensor runs)")
    ingest.add_argument("files", nargs="*", help="files in LOGS_DIR, by name or path (default: all pending)")
    ingest.set_defaults(handler=cmd_ingest)

    inspect_cmd = commands.add_parser(
        "inspect", help="show the detected format and the runs the ingest would store from files, without writing anything"
    )
    inspect_cmd.add_argument("files", nargs="+", help="log files (any path)")
    inspect_cmd.set_defaults(handler=cmd_inspect)

    watch_cmd = commands.add_parser("watch", help="ingest new log files as they arrive (Ctrl-C stops)")
    watch_cmd.add_argument("--poll", type=float, default=None, help="seconds between polls (default POLL_SECONDS)")
    watch_cmd.set_defaults(handler=cmd_watch)

    summary = commands.add_parser("summary", help="print runs, tokens, cost by model and check pass rates")
    summary.set_defaults(handler=cmd_summary)

    retry = commands.add_parser("retry-quarantined", help="put quarantined files back for another try")
    retry.add_argument("names", nargs="*", help="only these file names (default: all)")
    retry.add_argument("--ingest", action="store_true", help="run the ingest right away")
    retry.set_defaults(handler=cmd_retry_quarantined)

    # One positional pair instead of nested subparsers: "feedback 42 --good" and "feedback import FILE"
    # then share a command, and a run id can never be mistaken for a subcommand name.
    feedback_cmd = commands.add_parser(
        "feedback",
        help="add feedback on a run, import feedback from a file, or list it",
        usage="llm-monitoring feedback LOG_ID (--good | --bad) [--comment TEXT] [--reference TEXT] [--reviewer NAME]\n"
        "       llm-monitoring feedback import FILE.csv|FILE.jsonl\n"
        "       llm-monitoring feedback list [LOG_ID] [--reviewer NAME] [--limit N]",
    )
    feedback_cmd.add_argument("target", metavar="LOG_ID|import|list", help="a run id, or 'import', or 'list'")
    feedback_cmd.add_argument("extra", nargs="?", metavar="FILE|LOG_ID", help="the file to import, or the run to list")
    verdict = feedback_cmd.add_mutually_exclusive_group()
    verdict.add_argument("--good", dest="is_good", action="store_true", default=None, help="the answer is good")
    verdict.add_argument("--bad", dest="is_good", action="store_false", help="the answer is bad")
    feedback_cmd.add_argument("--comment", help="comments")
    feedback_cmd.add_argument("--reference", help="a reference answer")
    feedback_cmd.add_argument("--reviewer", help="who gives the feedback (with list: only theirs)")
    feedback_cmd.add_argument("--limit", type=_list_limit, default=50, help="with list: how many (default 50)")
    feedback_cmd.set_defaults(handler=cmd_feedback, feedback_parser=feedback_cmd)

    retention = commands.add_parser(
        "retention",
        help="delete runs older than RETENTION_DAYS and raw logs older than RETENTION_RAW_DAYS (the daily retention job)",
    )
    retention.add_argument("--dry-run", action="store_true", help="print what would be deleted and change nothing")
    retention.set_defaults(handler=cmd_retention)

    fake = commands.add_parser(
        "fake-data", help="fake runs for the dashboards, priced and evaluated like real logs", description=fake_data.DESCRIPTION
    )
    fake_data.add_arguments(fake)
    fake.set_defaults(handler=fake_data.run_command)

    judge_cmd = commands.add_parser(
        "judge",
        help="LLM judges of judges.yaml over stored runs: estimate the cost, or run them (the job the sensor runs)",
        description="estimate: runs to judge (after the cache and sampling), tokens and USD, nothing sent. "
        "run: judge them, one Dagster run over the days. Without dates: every stored run.",
    )
    judge_cmd.add_argument("action", choices=("run", "estimate"))
    judge_cmd.add_argument("--judge", action="append", metavar="NAME", help="only this judge (repeatable; default: all)")
    judge_cmd.add_argument("--from", dest="first", type=_day, metavar="DAY", help="first run day, YYYY-MM-DD (UTC)")
    judge_cmd.add_argument("--to", dest="last", type=_day, metavar="DAY", help="last run day, YYYY-MM-DD (UTC), included")
    judge_cmd.set_defaults(handler=cmd_judge, judge_parser=judge_cmd)

    dashboards = commands.add_parser(
        "dashboards", help="write the Grafana dashboards' JSON from llm_monitoring/grafana/build_dashboards.py"
    )
    dashboards.set_defaults(handler=lambda args: build_dashboards.write_dashboards())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    skip_final_collection()
    escape_unprintable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.debug or get_settings().debug)
        return args.handler(args)
    except IngestFailed as error:
        print(f"ingest failed: {error}", file=sys.stderr)
        return 1
    except RetentionFailed as error:
        print(f"retention failed: {error}", file=sys.stderr)
        return 1
    except JudgeRunFailed as error:
        print(f"judge run failed: {error}", file=sys.stderr)
        return 1
    except (DatabaseUnavailable, LogsDirUnusable, InvalidSetting, SourceUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
