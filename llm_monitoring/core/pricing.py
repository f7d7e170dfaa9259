"""LogRecord -> PriceResult with genai-prices: cache-aware, at the price in force when the run happened."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache

import genai_prices
from genai_prices import Usage, calc_price

from llm_monitoring.core.records import LogRecord, PriceResult

# Stored with every price so a re-pricing can tell which price data produced a number.
PRICE_DATA_VERSION = f"genai-prices {genai_prices.__version__}"

STATUS_PRICED = "priced"
STATUS_NO_USAGE = "no_usage: the log reports no token usage"
STATUS_NO_MODEL = "no_model: the log names no model"

# OpenAI-compatible clients (OpenRouter, Together, ...) report provider "openai" with a
# vendor-prefixed model name; genai-prices knows those models under these providers.
_FALLBACK_PROVIDERS = ("openrouter",)


@dataclass(frozen=True)
class _Resolution:
    provider_id: str | None
    model_ref: str
    note: str


def price_run(record: LogRecord) -> PriceResult:
    if record.input_tokens is None and record.output_tokens is None:
        return _unpriced(STATUS_NO_USAGE)
    if not record.model:
        return _unpriced(STATUS_NO_MODEL)
    resolution = resolve_model(record.provider, record.model)
    if isinstance(resolution, str):
        return _unpriced(resolution)
    usage = Usage(
        input_tokens=record.input_tokens or 0,
        output_tokens=record.output_tokens or 0,
        cache_read_tokens=record.cache_read_tokens or 0,
        cache_write_tokens=record.cache_write_tokens or 0,
    )
    when = record.run_started_at or datetime.now(timezone.utc)
    price = calc_price(usage, resolution.model_ref, provider_id=resolution.provider_id, genai_request_timestamp=when)
    status = STATUS_PRICED if not resolution.note else f"{STATUS_PRICED} ({resolution.note})"
    return PriceResult(
        input_cost=Decimal(price.input_price),
        output_cost=Decimal(price.output_price),
        total_cost=Decimal(price.total_price),
        status=status,
        price_data_version=PRICE_DATA_VERSION,
    )


def _unpriced(status: str) -> PriceResult:
    return PriceResult(None, None, None, status, PRICE_DATA_VERSION)


@lru_cache(maxsize=4096)
def resolve_model(provider: str | None, model: str) -> _Resolution | str:
    """Find the genai-prices (provider, model) for a logged pair, or a status saying why not.

    Cached per (provider, model): resolution does not depend on the day, and prices for a day are
    then looked up by genai-prices from its in-memory snapshot.
    """
    candidates: list[tuple[str | None, str, str]] = [(provider, model, "")]
    if "/" in model:
        vendor, _, bare = model.partition("/")
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
