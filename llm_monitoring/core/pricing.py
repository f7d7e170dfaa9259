"""LogRecord -> PriceResult: your own dated prices (PRICES_FILE) first, then genai-prices; cache-aware,
at the price in force when the run happened."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache

import genai_prices
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import ModelPrice, TieredPrices, TimeOfDateConstraint

from llm_monitoring.core.custom_prices import CustomPrices, PriceEntry, entry_cost
from llm_monitoring.core.limits import MAX_COUNT, USAGE_FIELDS, cost_problem
from llm_monitoring.core.records import LogRecord, PriceResult

# Stored with every price so a re-pricing can tell which price data produced a number.
PRICE_DATA_VERSION = f"genai-prices {genai_prices.__version__}"

STATUS_PRICED = "priced"
STATUS_NO_USAGE = "no_usage: the log reports no token usage"
STATUS_NO_MODEL = "no_model: the log names no model"
INVALID_USAGE = "invalid_usage"

# OpenAI-compatible clients (OpenRouter, Together, ...) report provider "openai" with a
# vendor-prefixed model name; genai-prices knows those models under these providers.
_FALLBACK_PROVIDERS = ("openrouter",)


@dataclass(frozen=True)
class _Resolution:
    provider_id: str | None
    model_ref: str
    note: str


def price_run(record: LogRecord, custom: CustomPrices | None = None, *, genai_version: str = PRICE_DATA_VERSION) -> PriceResult:
    """The run's cost: a matching entry of `custom` (a price file) wins over genai-prices.

    `genai_version` is recorded on prices genai-prices gave (a re-pricing with refreshed data names
    the refresh); a price from the file records the file's version (prices:<hash>)."""
    invalid = usage_problems(record)
    if invalid:
        return _unpriced(f"{INVALID_USAGE}: {'; '.join(invalid)}", genai_version)
    if record.input_tokens is None and record.output_tokens is None:
        return _unpriced(STATUS_NO_USAGE, genai_version)
    if not record.model:
        return _unpriced(STATUS_NO_MODEL, genai_version)
    counts = (
        record.input_tokens or 0,
        record.output_tokens or 0,
        record.cache_read_tokens or 0,
        record.cache_write_tokens or 0,
    )
    when = record.run_started_at or datetime.now(UTC)
    if custom is not None:
        entry = custom.find(record.provider, record.model, when.astimezone(UTC).date())
        if entry is not None:
            return _custom_price(custom, entry, counts, record.requests)
    resolution = resolve_model(record.provider, record.model)
    if isinstance(resolution, str):
        if custom is not None:
            resolution += f"; no entry of the price file {custom.source} matches"
        return _unpriced(resolution, genai_version)
    rates = _daily_rates(resolution, when.astimezone(UTC).date())
    if rates is not None:
        input_cost = sum((count * rate for count, rate in zip(counts, rates.input, strict=True)), Decimal(0))
        output_cost = sum((count * rate for count, rate in zip(counts, rates.output, strict=True)), Decimal(0))
        total_cost = input_cost + output_cost + rates.per_request
    else:
        price = calc_price(_usage(counts), resolution.model_ref, provider_id=resolution.provider_id, genai_request_timestamp=when)
        input_cost, output_cost, total_cost = Decimal(price.input_price), Decimal(price.output_price), Decimal(price.total_price)
    problem = next(filter(None, map(cost_problem, (input_cost, output_cost, total_cost))), None)
    if problem:
        return _unpriced(f"{INVALID_USAGE}: the cost of these token counts cannot be stored: {problem}", genai_version)
    status = STATUS_PRICED if not resolution.note else f"{STATUS_PRICED} ({resolution.note})"
    return PriceResult(
        input_cost=input_cost,
        output_cost=output_cost,
        total_cost=total_cost,
        status=status,
        price_data_version=genai_version,
    )


def _custom_price(custom: CustomPrices, entry: PriceEntry, counts: tuple[int, int, int, int], requests: int | None) -> PriceResult:
    input_tokens, output_tokens, cache_read, cache_write = counts
    try:
        cost = entry_cost(entry, input_tokens, output_tokens, cache_read, cache_write, max(requests or 0, 1))
    except ValueError as error:
        return _unpriced(f"{INVALID_USAGE}: {error}", custom.version)
    problem = next(filter(None, map(cost_problem, (cost.input_cost, cost.output_cost, cost.total_cost))), None)
    if problem:
        return _unpriced(f"{INVALID_USAGE}: the cost of these token counts cannot be stored: {problem}", custom.version)
    return PriceResult(
        input_cost=cost.input_cost,
        output_cost=cost.output_cost,
        total_cost=cost.total_cost,
        status=f"{STATUS_PRICED} (price file {entry.label})",
        price_data_version=custom.version,
    )


def price_call(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read_tokens: int = 0,
    when: datetime | None = None,
) -> PriceResult:
    """The price of one model call (an LLM judge's), priced like a run: at the time it was made."""
    return price_run(
        LogRecord(
            agent_name=None,
            provider=provider,
            model=model,
            user_prompt=None,
            instructions=None,
            assistant_answer=None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=0,
            requests=1,
            tool_calls=(),
            finish_reasons=(),
            run_started_at=when or datetime.now(UTC),
            run_finished_at=None,
        )
    )


def usage_problems(record: LogRecord) -> list[str]:
    """Why a run's token counts cannot be priced: the parser's notes on them, and for counts that
    did not come through the parser (stored rows of older versions) a negative or oversized count."""
    problems = [note for note in record.value_notes if note.partition(":")[0] in USAGE_FIELDS]
    counts = (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens)
    for field, count in zip(USAGE_FIELDS, counts, strict=True):
        if count is not None and not 0 <= count <= MAX_COUNT:
            problems.append(f"{field}: {count} is {'negative' if count < 0 else 'over the largest count stored'}")
    return problems


def _usage(counts: tuple[int, int, int, int]) -> Usage:
    input_tokens, output_tokens, cache_read, cache_write = counts
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read, cache_write_tokens=cache_write)


@dataclass(frozen=True)
class _Rates:
    """USD per token for (input, output, cache read, cache write) counts, split by direction, and the
    fixed fee genai-prices adds to the total of a call (Perplexity charges per request)."""

    input: tuple[Decimal, Decimal, Decimal, Decimal]
    output: tuple[Decimal, Decimal, Decimal, Decimal]
    per_request: Decimal


_PROBE = 1_000_000


@lru_cache(maxsize=4096)
def _daily_rates(resolution: _Resolution, day: date) -> _Rates | None:
    """Per-token rates of a model on a day, or None when its prices are tiered (not linear in tokens).

    genai-prices resolves the model and its prices on every call; a batch of runs of one model on
    one day shares its rates, so they are probed once. Input tokens include cache
    reads and writes, so each cache rate is measured as the change it makes to a plain input.
    """
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    _, model = data_snapshot.get_snapshot().find_provider_model(resolution.model_ref, None, resolution.provider_id, None)
    if not isinstance(model.prices, ModelPrice) and any(
        isinstance(conditional.constraint, TimeOfDateConstraint) for conditional in model.prices
    ):
        return None  # off-peak hours (DeepSeek): the price depends on the time of day, not only the day
    model_price = model.get_prices(when)
    if any(isinstance(value, TieredPrices) for value in vars(model_price).values()):
        return None
    probes = [(_PROBE, 0, 0, 0), (0, _PROBE, 0, 0), (_PROBE, 0, _PROBE, 0), (_PROBE, 0, 0, _PROBE)]
    prices = [model_price.calc_price(_usage(probe)) for probe in probes]

    def per_token(direction: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        plain_input, output, with_read, with_write = (price[direction] for price in prices)
        return (
            plain_input / _PROBE,
            output / _PROBE,
            (with_read - plain_input) / _PROBE,
            (with_write - plain_input) / _PROBE,
        )

    fee = model_price.calc_price(_usage((0, 0, 0, 0)))
    return _Rates(per_token("input_price"), per_token("output_price"), fee["total_price"] - fee["input_price"] - fee["output_price"])


def forget_price_data() -> None:
    """Drop the cached model resolutions and daily rates, after the price data changed (a refresh)."""
    resolve_model.cache_clear()
    _daily_rates.cache_clear()


def _unpriced(status: str, version: str = PRICE_DATA_VERSION) -> PriceResult:
    return PriceResult(None, None, None, status, version)


@lru_cache(maxsize=4096)
def resolve_model(provider: str | None, model: str) -> _Resolution | str:
    """Find the genai-prices (provider, model) for a logged pair, or a status saying why not.

    Cached per (provider, model): resolution does not depend on the day, and prices for a day are
    then looked up by genai-prices from its in-memory snapshot.
    """
    candidates: list[tuple[str | None, str, str]] = [(provider, model, "")]
    if "/" in model:
        bare = model.partition("/")[2]
        candidates.append((provider, bare, f"model {model!r} priced as {bare!r}"))
        candidates += [(other, model, f"priced as {other} {model!r}") for other in _FALLBACK_PROVIDERS if other != provider]
    if provider is None:
        candidates.append((None, model, "provider inferred from the model name"))
    last_error = ""
    for provider_id, model_ref, note in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                calc_price(Usage(input_tokens=1, output_tokens=1), model_ref, provider_id=provider_id)
        except LookupError as error:
            last_error = str(error)
            continue
        return _Resolution(provider_id, model_ref, note)
    who = f"provider {provider!r}, model {model!r}" if provider else f"model {model!r}"
    return f"unknown_model: genai-prices has no price for {who} ({last_error})"
