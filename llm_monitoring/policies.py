"""The governance settings a stored run follows, loaded from their files: your own prices
(PRICES_FILE) and the redaction (REDACT, REDACT_PATTERNS_FILE).

Each file is read again only when it changes (its size and modification time), so a pass over
thousands of files reads it once, and an edited file applies from the next run on. A setting or
file that cannot be used is an InvalidSetting whose one line names it (and the entry).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from llm_monitoring.config import InvalidSetting, prices_file, redaction_settings
from llm_monitoring.core.custom_prices import CustomPrices, InvalidPricesFile, parse_custom_prices
from llm_monitoring.core.redaction import Detector, InvalidRedaction, Redactor, detector_names, extra_detectors


@dataclass(frozen=True)
class Policies:
    """What build_run applies to every run: the price file (None: genai-prices alone) and the redactor."""

    prices: CustomPrices | None
    redactor: Redactor


def load_policies() -> Policies:
    return Policies(custom_prices(), current_redactor())


def custom_prices() -> CustomPrices | None:
    path = prices_file()
    if path is None:
        return None
    return _parsed_prices(str(path), *_stamp(path))


def current_redactor() -> Redactor:
    settings = redaction_settings()
    try:
        names = detector_names(settings.detectors)
    except InvalidRedaction as error:
        raise InvalidSetting(str(error)) from None
    if not names:
        return Redactor()  # REDACT=none: nothing is redacted, extra patterns included
    extra: tuple[Detector, ...] = ()
    if settings.patterns_file is not None:
        extra = _patterns(str(settings.patterns_file), *_stamp(settings.patterns_file))
    return _redactor(names, extra)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError as error:
        raise InvalidSetting(f"{path} cannot be read: {error.strerror or error}") from None
    return info.st_mtime_ns, info.st_size


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise InvalidSetting(f"{path} cannot be read: {error.strerror or error}") from None


@lru_cache(maxsize=8)
def _parsed_prices(path: str, mtime_ns: int, size: int) -> CustomPrices:
    try:
        return parse_custom_prices(_read(path), path)
    except InvalidPricesFile as error:
        raise InvalidSetting(f"PRICES_FILE: {error}") from None


@lru_cache(maxsize=8)
def _patterns(path: str, mtime_ns: int, size: int) -> tuple[Detector, ...]:
    """The `patterns:` mapping of a REDACT_PATTERNS_FILE: `name: regular expression` per line."""
    try:
        document = yaml.safe_load(_read(path).decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidSetting(f"REDACT_PATTERNS_FILE {path} is not valid YAML: {first}") from None
    if not isinstance(document, dict) or set(document) != {"patterns"} or not isinstance(document["patterns"], dict):
        raise InvalidSetting(f"REDACT_PATTERNS_FILE {path} must hold one key, 'patterns:', mapping names to regular expressions")
    try:
        return extra_detectors(document["patterns"], path)
    except InvalidRedaction as error:
        raise InvalidSetting(str(error)) from None


@lru_cache(maxsize=8)
def _redactor(names: tuple[str, ...], extra: tuple[Detector, ...]) -> Redactor:
    return Redactor.of(names, extra)
