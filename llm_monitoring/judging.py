"""Running LLM judges over a window of stored runs: concurrent, retried, committed in batches, cached per
judge version, costed at call time; and the estimate of what a run would cost before anything is sent.

Plain Python on top of the Database, like `recompute.py`; the partitioned Dagster asset
`judge_verdicts` calls `judge_window` with its partition window, the command line `estimate`.
The judges come from judges.yaml (core/judges.py validates it); pydantic-ai calls the models, with
keys from the environment only (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...), never stored or printed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from llm_monitoring.config import judges_file
from llm_monitoring.core.formats import parse_stored_run
from llm_monitoring.core.judges import (
    VERDICT_OUTPUT_TOKENS,
    Judge,
    JudgeConfigError,
    RunFields,
    estimate_input_tokens,
    parse_judges,
    render_rubric,
    sampled,
)
from llm_monitoring.core.pricing import price_call
from llm_monitoring.core.records import ParseError, PriceResult
from llm_monitoring.core.wording import plural
from llm_monitoring.judge_models import (
    InvalidVerdict,
    JudgeSetupError,
    ModelFactory,
    RetryPolicy,
    VerdictRequests,
    build_model,
    describe,
    fatal,
    retry_after,
    retryable,
)
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import IdRange, Judgement, RunForJudging, count_runs, runs_to_judge, store_judgements

logger = logging.getLogger("llm_monitoring.judging")

BATCH_SIZE = 25  # verdicts per transaction: a killed run re-sends at most this many calls per judge
FLUSH_SECONDS = 5.0  # ...or those of the last few seconds, whichever comes first
FAILURE_STREAK_LIMIT = 20  # consecutive failed calls that stop a judge (the server is down, not one run odd)
MAX_REASON_CHARS = 2000
INVALID_VERDICT_ATTEMPTS = 2  # answers without a valid verdict before a call counts as failed


# ---------------------------------------------------------------------------- judges.yaml


def load_judges(path: Path | None = None) -> tuple[Judge, ...]:
    """The judges declared in JUDGES_FILE (default ./judges.yaml; none when that is absent)."""
    path, named = (path, True) if path is not None else judges_file()
    if not path.exists():
        if named:
            raise JudgeConfigError(f"JUDGES_FILE {path} does not exist")
        return ()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise JudgeConfigError(f"{path}: cannot be read: {getattr(error, 'strerror', None) or error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise JudgeConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    return parse_judges(document, str(path))


# ---------------------------------------------------------------------------- reports


@dataclass
class JudgeReport:
    """What one judge did over a window."""

    judge: str
    version: str
    model: str
    runs: int = 0  # runs in the window (and id ranges)
    cached: int = 0  # already judged by this version: not sent
    sampled_out: int = 0
    judged: int = 0  # verdicts stored by this run
    passed: int = 0
    failed_calls: list[tuple[int, str]] = field(default_factory=list)  # (run id, why): no verdict stored
    budget_skipped: int = 0  # left for a later run: max_cost_usd reached
    stopped: str | None = None  # why the judge stopped before the end of its runs
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)  # of the priced calls
    unpriced_calls: int = 0
    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    retry_wait_seconds: float = 0.0  # the waits the retries chose (Retry-After, else backoff)
    seconds: float = 0.0

    @property
    def pass_rate(self) -> float | None:
        return round(self.passed / self.judged, 4) if self.judged else None

    def line(self) -> str:
        failed = f", {plural(len(self.failed_calls), 'failed call')}" if self.failed_calls else ""
        budget = f", {self.budget_skipped} left for later (max_cost_usd reached)" if self.budget_skipped else ""
        rate = f", pass rate {self.pass_rate:.0%}" if self.pass_rate is not None else ""
        unpriced = f" ({self.unpriced_calls} calls unpriced)" if self.unpriced_calls else ""
        stopped = f"; stopped: {self.stopped}" if self.stopped else ""
        return (
            f"{self.judge} ({self.version}): {self.judged} judged, {self.cached} already judged, {self.sampled_out} sampled out"
            f"{failed}{budget}{rate}; {self.input_tokens:,} tokens in, {self.output_tokens:,} out, ${self.cost:.6f}{unpriced}, "
            f"{plural(self.requests, 'request')} ({self.retries} retries) in {self.seconds:.1f}s{stopped}"
        )


@dataclass(frozen=True)
class CallFailure:
    reason: str
    fatal: bool = False


# ---------------------------------------------------------------------------- one call


def run_fields(run: RunForJudging, judge: Judge) -> RunFields:
    tool_calls = ()
    if judge.uses_tool_calls and run.raw_json:
        try:
            tool_calls = parse_stored_run(run.raw_json, fallback_time=run.run_started_at).tool_calls
        except ParseError:
            tool_calls = ()  # stored logs parsed once; one that no longer does shows no tool calls
    return RunFields(run.user_prompt, run.instructions, run.assistant_answer, run.reference_answer, tool_calls)


def judge_prompt(judge: Judge, run: RunForJudging) -> str:
    return render_rubric(judge.rubric, run_fields(run, judge))


async def judge_run(
    requests: VerdictRequests, judge: Judge, run: RunForJudging, retry: RetryPolicy, report: JudgeReport
) -> Judgement | CallFailure:
    """Ask the judge about one run, retrying what a wait may fix; a call that still fails gives no verdict."""
    from pydantic_ai.exceptions import ModelAPIError

    prompt = judge_prompt(judge, run)
    started = time.monotonic()
    attempt = invalid = 0
    while True:
        attempt += 1
        report.requests += 1
        try:
            verdict, usage = await requests.ask(prompt)
            break
        except ModelAPIError as error:
            if retryable(error) and attempt < retry.max_attempts:
                delay = retry.delay(attempt, retry_after(error))
                report.retries += 1
                report.retry_wait_seconds += delay
                await asyncio.sleep(delay)
                continue
            tries = f" after {plural(attempt, 'attempt')}" if attempt > 1 else ""
            return CallFailure(f"{describe(error)}{tries}", fatal=fatal(error))
        except InvalidVerdict as error:
            invalid += 1
            if invalid < INVALID_VERDICT_ATTEMPTS:  # a model's slip: asking again usually gets a verdict
                report.retries += 1
                continue
            return CallFailure(f"no valid verdict after {plural(invalid, 'answer')}: {error}")
    now = datetime.now(UTC)
    price = price_call(
        judge.price_provider, judge.model_name, usage.input_tokens, usage.output_tokens, cache_read_tokens=usage.cache_read_tokens, when=now
    )
    return Judgement(
        log_id=run.log_id,
        check_name=judge.name,
        evaluator_version=judge.version,
        passed=verdict.passed,
        score=verdict.score,
        reason=verdict.reason[:MAX_REASON_CHARS],
        model=judge.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        requests=attempt,
        cost=price.total_cost,
        pricing_status=price.status,
        price_data_version=price.price_data_version,
        latency_seconds=round(time.monotonic() - started, 3),
        created_at=now,
    )


# ---------------------------------------------------------------------------- a window of runs


@dataclass
class _Budget:
    """max_cost_usd of one job run: a call starts only while the cost spent plus the estimates of the calls
    in flight and its own stays within it."""

    limit: Decimal | None
    spent: Decimal = Decimal(0)
    in_flight: Decimal = Decimal(0)

    def admits(self, estimate: Decimal) -> bool:
        return self.limit is None or self.spent + self.in_flight + estimate <= self.limit


def estimated_cost(judge: Judge, input_tokens: int, output_tokens: int) -> PriceResult:
    return price_call(judge.price_provider, judge.model_name, input_tokens, output_tokens)


def judge_window(
    database: Database,
    judges: Sequence[Judge],
    start: datetime | None,
    end: datetime | None,
    *,
    id_ranges: Sequence[IdRange] = (),
    model_factory: ModelFactory | None = None,
    retry: RetryPolicy | None = None,
    batch_size: int = BATCH_SIZE,
    log: Callable[[str], None] = logger.info,
) -> list[JudgeReport]:
    """Judge the runs started in [start, end) (and in `id_ranges`, when given) with each judge in turn."""
    return asyncio.run(
        _judge_all(database, judges, start, end, id_ranges, model_factory or build_model, retry or RetryPolicy(), batch_size, log)
    )


async def _judge_all(
    database: Database,
    judges: Sequence[Judge],
    start: datetime | None,
    end: datetime | None,
    id_ranges: Sequence[IdRange],
    model_factory: ModelFactory,
    retry: RetryPolicy,
    batch_size: int,
    log: Callable[[str], None],
) -> list[JudgeReport]:
    reports = []
    for judge in judges:
        report = await _judge_one(database, judge, start, end, id_ranges, model_factory, retry, batch_size, log)
        log(report.line())
        reports.append(report)
    return reports


async def _judge_one(
    database: Database,
    judge: Judge,
    start: datetime | None,
    end: datetime | None,
    id_ranges: Sequence[IdRange],
    model_factory: ModelFactory,
    retry: RetryPolicy,
    batch_size: int,
    log: Callable[[str], None],
) -> JudgeReport:
    report = JudgeReport(judge.name, judge.version, judge.model)
    report.runs, report.cached = count_runs(database, judge.version, start, end, id_ranges)
    clock = time.monotonic()
    if report.runs == report.cached:
        return report
    if judge.max_cost_usd is not None and not estimated_cost(judge, 1, 1).priced:
        report.stopped = f"max_cost_usd is set but genai-prices has no price for {judge.model}, so the budget cannot be kept"
        return report
    try:
        model = model_factory(judge)
    except JudgeSetupError as error:
        report.stopped = str(error)
        return report

    requests = VerdictRequests(model)
    budget = _Budget(judge.max_cost_usd)
    queue: asyncio.Queue[RunForJudging | None] = asyncio.Queue(maxsize=judge.concurrency * 2)
    stop = asyncio.Event()
    pending: list[Judgement] = []
    last_flush = time.monotonic()
    streak = 0

    def flush() -> None:
        nonlocal last_flush
        if pending:
            report.judged += store_judgements(database, pending)
            pending.clear()
        last_flush = time.monotonic()

    async def produce() -> None:
        try:
            for chunk in runs_to_judge(database, judge.version, start, end, id_ranges, with_raw_json=judge.uses_tool_calls):
                for run in chunk:
                    if stop.is_set():
                        return
                    if sampled(run.content_hash, judge.sample_rate):
                        await queue.put(run)
                    else:
                        report.sampled_out += 1
        finally:
            for _ in range(judge.concurrency):
                await queue.put(None)

    async def work() -> None:
        nonlocal streak
        while (run := await queue.get()) is not None:
            if stop.is_set():
                continue
            estimate = _call_estimate(judge, run)
            if not budget.admits(estimate):
                report.budget_skipped += 1
                continue
            budget.in_flight += estimate
            try:
                outcome = await judge_run(requests, judge, run, retry, report)
            finally:
                budget.in_flight -= estimate
            if isinstance(outcome, CallFailure):
                report.failed_calls.append((run.log_id, outcome.reason))
                streak += 1
                if outcome.fatal or streak >= FAILURE_STREAK_LIMIT:
                    report.stopped = outcome.reason if outcome.fatal else f"{streak} calls failed in a row, the last: {outcome.reason}"
                    stop.set()
                continue
            streak = 0
            _tally(report, budget, outcome)
            pending.append(outcome)
            if len(pending) >= batch_size or time.monotonic() - last_flush >= FLUSH_SECONDS:
                flush()
                log(f"{judge.name}: {report.judged} verdicts stored, {len(report.failed_calls)} failed calls so far")

    try:
        async with model:  # closes the HTTP client it opened
            await asyncio.gather(produce(), *(work() for _ in range(judge.concurrency)))
    finally:
        # Whatever ends the run (an error, an interrupt), the verdicts already paid for are kept.
        flush()
        report.seconds = round(time.monotonic() - clock, 3)
    return report


def _call_estimate(judge: Judge, run: RunForJudging) -> Decimal:
    if judge.max_cost_usd is None:
        return Decimal(0)
    price = estimated_cost(judge, estimate_input_tokens(judge_prompt(judge, run)), VERDICT_OUTPUT_TOKENS)
    return price.total_cost or Decimal(0)


def _tally(report: JudgeReport, budget: _Budget, judgement: Judgement) -> None:
    report.passed += judgement.passed
    report.input_tokens += judgement.input_tokens or 0
    report.output_tokens += judgement.output_tokens or 0
    if judgement.cost is None:
        report.unpriced_calls += 1
    else:
        report.cost += judgement.cost
        budget.spent += judgement.cost


# ---------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class JudgeEstimate:
    """What judging a window would take, before anything is sent."""

    judge: str
    version: str
    model: str
    runs: int
    cached: int
    sampled_out: int
    to_judge: int
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # None: genai-prices has no price for the model
    price_status: str

    def line(self) -> str:
        cost = f"${self.cost:.4f} USD" if self.cost is not None else f"unknown ({self.price_status})"
        return (
            f"{self.judge} ({self.version}, {self.model}): {plural(self.to_judge, 'run')} to judge of {self.runs} "
            f"({self.cached} already judged, {self.sampled_out} sampled out); "
            f"about {self.input_tokens:,} tokens in and {self.output_tokens:,} out; estimated cost {cost}"
        )


def estimate(
    database: Database, judges: Sequence[Judge], start: datetime | None, end: datetime | None, id_ranges: Sequence[IdRange] = ()
) -> list[JudgeEstimate]:
    """Runs each judge would be sent (after its cache and its sample), their tokens and cost: rubric text at
    about four characters a token plus the verdict schema, and a one-or-two-sentence verdict."""
    estimates = []
    for judge in judges:
        runs, cached = count_runs(database, judge.version, start, end, id_ranges)
        to_judge = sampled_out = input_tokens = 0
        for chunk in runs_to_judge(database, judge.version, start, end, id_ranges, with_raw_json=judge.uses_tool_calls):
            for run in chunk:
                if not sampled(run.content_hash, judge.sample_rate):
                    sampled_out += 1
                    continue
                to_judge += 1
                input_tokens += estimate_input_tokens(judge_prompt(judge, run))
        output_tokens = to_judge * VERDICT_OUTPUT_TOKENS
        price = estimated_cost(judge, input_tokens, output_tokens)
        estimates.append(
            JudgeEstimate(
                judge.name,
                judge.version,
                judge.model,
                runs,
                cached,
                sampled_out,
                to_judge,
                input_tokens,
                output_tokens,
                price.total_cost,
                price.status,
            )
        )
    return estimates


def report_metadata(reports: Sequence[JudgeReport]) -> dict[str, Any]:
    """Totals over the judges of one run, for the asset's metadata and the command line."""
    judged = sum(report.judged for report in reports)
    passed = sum(report.passed for report in reports)
    return {
        "runs_judged": judged,
        "skipped_cached": sum(report.cached for report in reports),
        "sampled_out": sum(report.sampled_out for report in reports),
        "failed_calls": sum(len(report.failed_calls) for report in reports),
        "budget_skipped": sum(report.budget_skipped for report in reports),
        "input_tokens": sum(report.input_tokens for report in reports),
        "output_tokens": sum(report.output_tokens for report in reports),
        "cost_usd": float(sum((report.cost for report in reports), Decimal(0))),
        "unpriced_calls": sum(report.unpriced_calls for report in reports),
        "requests": sum(report.requests for report in reports),
        "retries": sum(report.retries for report in reports),
        "pass_rate": round(passed / judged, 4) if judged else None,
    }
