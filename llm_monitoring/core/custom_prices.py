"""Your own dated prices (PRICES_FILE): parsed and validated from the file's text, matched to a run.

A price file holds contract prices and self-hosted models that genai-prices does not know:

    prices:
      - provider: openai
        model: gpt-4o-mini*          # exact name or a glob (*, ?, [..]), case-insensitive
        from: 2025-01-01             # first UTC day the price applies
        until: 2025-12-31            # optional: last UTC day it applies (inclusive)
        input_mtok: 1.00             # USD per million input tokens not read from or written to the cache
        cache_read_mtok: 0.50        # optional, default input_mtok
        cache_write_mtok: 1.25       # optional, default input_mtok
        output_mtok: 2.00
        request: 0.0001              # optional: USD per model request of the run

Pure: the text comes in, records come out; reading the file and caching it is prices.py's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any

import yaml

MTOK = Decimal(1_000_000)
_GLOB_CHARACTERS = frozenset("*?[")
_REQUIRED = ("provider", "model", "from", "input_mtok", "output_mtok")
_OPTIONAL = ("until", "cache_read_mtok", "cache_write_mtok", "request")


class _PricesLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: days are read as text and checked here, so that 2024-13-01
    is an error naming its entry, not a ValueError from inside the YAML parser."""


_PricesLoader.yaml_implicit_resolvers = {
    first: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class InvalidPricesFile(ValueError):
    """A price file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class PriceEntry:
    number: int  # 1-based position in the file, for messages and the pricing status
    provider: str  # lower case; a glob
    model: str  # lower case; exact or a glob
    first_day: date
    last_day: date | None  # inclusive; None: open-ended
    input_mtok: Decimal
    cache_read_mtok: Decimal
    cache_write_mtok: Decimal
    output_mtok: Decimal
    request: Decimal

    @property
    def is_glob(self) -> bool:
        return bool(_GLOB_CHARACTERS & set(self.model))

    @property
    def label(self) -> str:
        return f"entry {self.number} ({self.provider} {self.model})"

    def matches(self, provider: str | None, model: str, day: date) -> bool:
        if day < self.first_day or (self.last_day is not None and day > self.last_day):
            return False
        if not fnmatchcase((provider or "").lower(), self.provider):
            return False
        name = model.lower()
        return fnmatchcase(name, self.model) if self.is_glob else name == self.model


@dataclass(frozen=True)
class EntryCost:
    input_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal


def entry_cost(entry: PriceEntry, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, requests: int) -> EntryCost:
    """Cost of a run at an entry's rates. Input tokens include the cached ones (as logged by
    pydantic-ai and read by genai-prices): the uncached rest is billed at input_mtok, cache reads
    and writes at their own rates. Raises ValueError when the cache counts exceed the input."""
    uncached = input_tokens - cache_read - cache_write
    if uncached < 0:
        raise ValueError(f"cache tokens ({cache_read} read, {cache_write} written) exceed the input tokens ({input_tokens})")
    input_cost = (uncached * entry.input_mtok + cache_read * entry.cache_read_mtok + cache_write * entry.cache_write_mtok) / MTOK
    output_cost = output_tokens * entry.output_mtok / MTOK
    return EntryCost(input_cost, output_cost, input_cost + output_cost + requests * entry.request)


@dataclass(frozen=True)
class CustomPrices:
    """The entries of one price file and the version stored with the costs they produce."""

    source: str  # the file, as named in messages
    version: str  # "prices:<first 8 hex digits of the SHA-256 of the file's bytes>"
    entries: tuple[PriceEntry, ...]

    def find(self, provider: str | None, model: str, when: datetime | date) -> PriceEntry | None:
        """The entry in force for a run: an exact model name beats a glob, then the latest `from`,
        then the later entry in the file (appending a new dated price overrides the old one)."""
        day = when if not isinstance(when, datetime) else when.date()
        found = [entry for entry in self.entries if entry.matches(provider, model, day)]
        if not found:
            return None
        return max(found, key=lambda entry: (not entry.is_glob, entry.first_day, entry.number))


def prices_version(raw: bytes) -> str:
    return f"prices:{hashlib.sha256(raw).hexdigest()[:8]}"


def parse_custom_prices(raw: bytes, source: str) -> CustomPrices:
    """The price file's entries, or InvalidPricesFile naming the file, the entry and what is wrong."""
    try:
        document = yaml.load(raw.decode("utf-8-sig"), Loader=_PricesLoader)  # _PricesLoader is a SafeLoader
    except UnicodeDecodeError as error:
        raise InvalidPricesFile(f"price file {source} is not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InvalidPricesFile(f"price file {source} is not valid YAML{at}: {problem}") from None
    if document is None:
        return CustomPrices(source, prices_version(raw), ())
    if not isinstance(document, dict) or set(document) != {"prices"}:
        keys = ", ".join(map(str, document)) if isinstance(document, dict) else type(document).__name__
        raise InvalidPricesFile(f"price file {source} must hold one key, 'prices:', with a list of entries (found: {keys})")
    entries = document["prices"] or []
    if not isinstance(entries, list):
        raise InvalidPricesFile(f"price file {source}: 'prices:' must be a list of entries, not {type(entries).__name__}")
    parsed = tuple(_entry(source, number, item) for number, item in enumerate(entries, start=1))
    return CustomPrices(source, prices_version(raw), parsed)


def _entry(source: str, number: int, item: Any) -> PriceEntry:
    name = f"price file {source}, entry {number}"
    if not isinstance(item, Mapping):
        raise InvalidPricesFile(f"{name}: an entry must be a mapping of provider, model, from, ..., not {type(item).__name__}")
    if isinstance(item.get("provider"), str) and isinstance(item.get("model"), str):
        name += f" ({item['provider']} {item['model']})"
    unknown = sorted(str(key) for key in item if key not in _REQUIRED + _OPTIONAL)
    if unknown:
        raise InvalidPricesFile(f"{name}: unknown field {', '.join(unknown)} (fields: {', '.join(_REQUIRED + _OPTIONAL)})")
    missing = [key for key in _REQUIRED if item.get(key) in (None, "")]
    if missing:
        raise InvalidPricesFile(f"{name}: missing {', '.join(missing)}")
    provider, model = (_text(name, key, item[key]) for key in ("provider", "model"))
    first_day = _day(name, "from", item["from"])
    last_day = _day(name, "until", item["until"]) if item.get("until") is not None else None
    if last_day is not None and last_day < first_day:
        raise InvalidPricesFile(f"{name}: until ({last_day}) is before from ({first_day})")
    input_mtok = _money(name, "input_mtok", item["input_mtok"])
    return PriceEntry(
        number=number,
        provider=provider,
        model=model,
        first_day=first_day,
        last_day=last_day,
        input_mtok=input_mtok,
        cache_read_mtok=_money(name, "cache_read_mtok", item.get("cache_read_mtok", input_mtok)),
        cache_write_mtok=_money(name, "cache_write_mtok", item.get("cache_write_mtok", input_mtok)),
        output_mtok=_money(name, "output_mtok", item["output_mtok"]),
        request=_money(name, "request", item.get("request", 0)),
    )


def _text(name: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPricesFile(f"{name}: {key} must be a name, got {value!r}")
    return value.strip().lower()


def _day(name: str, key: str, value: Any) -> date:
    if isinstance(value, datetime):
        raise InvalidPricesFile(f"{name}: {key} must be a day (YYYY-MM-DD), got a time {value.isoformat()}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidPricesFile(f"{name}: {key} must be a day (YYYY-MM-DD), got {value!r}") from None


def _money(name: str, key: str, value: Any) -> Decimal:
    # YAML reads 0.15 as a float: its shortest repr is the number as written.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidPricesFile(f"{name}: {key} must be a number of USD, got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidPricesFile(f"{name}: {key} must be a number of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidPricesFile(f"{name}: {key} must be a number of USD of 0 or more, got {value!r}")
    return amount
