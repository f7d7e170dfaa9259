"""Settings from environment variables, read each time they are asked for (never frozen at import)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from llm_monitoring.core.quality import QualityThresholds
from llm_monitoring.database_url import mask_whole_url

_TRUE = {"1", "true", "yes", "on"}

DEFAULT_DATABASE_URL = "sqlite:///monitoring.db"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def _flag(*names: str) -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


class InvalidSetting(ValueError):
    """An environment variable holds a value its setting cannot take; the message names both."""


def _number(name: str, default: float, environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidSetting(f"{name} must be a number, got {raw!r}")
    return value


# Comma-separated patterns: per-run JSON files and JSON Lines (.jsonl, .ndjson) that agents append to.
DEFAULT_LOG_FILE_GLOB = "*.json,*.jsonl,*.ndjson"


@dataclass(frozen=True)
class Settings:
    logs_dir: Path
    database_url: str
    log_file_glob: str
    processed_prefix: str
    processed_dir: str
    quarantine_dir: str
    poll_seconds: float
    settle_seconds: float
    max_log_bytes: int
    batch_files: int
    run_files: int
    workers: int
    debug: bool


def get_settings() -> Settings:
    return Settings(
        logs_dir=Path(_env("LOGS_DIR", "logs")),
        database_url=_env("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
        log_file_glob=_env("LOG_FILE_GLOB", DEFAULT_LOG_FILE_GLOB) or DEFAULT_LOG_FILE_GLOB,
        processed_prefix=_env("PROCESSED_PREFIX", "_"),
        processed_dir=_env("PROCESSED_DIR", ""),
        quarantine_dir=_env("QUARANTINE_DIR", "_quarantine") or "_quarantine",
        poll_seconds=_number("POLL_SECONDS", 2.0),
        settle_seconds=_number("SETTLE_SECONDS", 5.0),
        max_log_bytes=int(_number("MAX_LOG_BYTES", 50 * 1024 * 1024)),
        batch_files=max(1, int(_number("INGEST_BATCH_FILES", 200))),
        run_files=max(1, int(_number("INGEST_RUN_FILES", 1000))),
        workers=max(1, int(_number("INGEST_WORKERS", min(os.cpu_count() or 1, 4)))),
        debug=_flag("DEBUG", "MONITORING_DEBUG"),
    )


# A scheme of two letters or more, so that a Windows drive (C:/logs) stays a path.
_URL_LIKE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/+")
# S3's rules for new buckets, with the underscore of older ones and S3-compatible servers.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class LogsDirUnusable(ValueError):
    """LOGS_DIR names no folder or bucket this version can read; the message says why in one line."""


@dataclass(frozen=True)
class BucketLocation:
    """LOGS_DIR as `s3://bucket/prefix`: the objects under the prefix are the log files."""

    bucket: str
    prefix: str  # "" or ending with "/"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def is_bucket_url(logs_dir: str | os.PathLike[str]) -> bool:
    return _URL_LIKE.match(os.fspath(logs_dir)) is not None


def check_logs_location(logs_dir: str | os.PathLike[str]) -> Path | BucketLocation:
    """The local folder or the bucket LOGS_DIR names, or LogsDirUnusable. A bucket is checked when it
    is listed (its credentials and existence are the server's to say)."""
    text = os.fspath(logs_dir)
    url = _URL_LIKE.match(text)  # Path("s3://bucket") is "s3:/bucket": match either form
    if not url:
        return check_logs_dir(text)
    scheme = url.group("scheme").lower()
    rest = text[url.end() :]
    shown = mask_whole_url(f"{scheme}://{rest}")
    if scheme not in ("s3", "s3a"):
        raise LogsDirUnusable(
            f"LOGS_DIR {shown} is a {scheme}:// URL; logs are read from a local folder or an S3-compatible bucket "
            "(s3://bucket/prefix, with AWS_ENDPOINT_URL for servers other than AWS)"
        )
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise LogsDirUnusable(
            f"LOGS_DIR {shown} holds credentials; give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE), never in the URL"
        )
    if not _BUCKET_NAME.fullmatch(bucket):
        raise LogsDirUnusable(f"LOGS_DIR {shown} names no valid bucket ({bucket!r}); write s3://bucket/prefix")
    prefix = prefix.strip("/")
    return BucketLocation(bucket, f"{prefix}/" if prefix else "")


def check_logs_dir(logs_dir: str | os.PathLike[str]) -> Path:
    """The local log folder, or LogsDirUnusable. A folder that is not there is said, never taken for
    an empty one: a typo in LOGS_DIR would otherwise look like a quiet day."""
    text = os.fspath(logs_dir)
    url = _URL_LIKE.match(text)
    if url:
        shown = mask_whole_url(f"{url.group('scheme')}://{text[url.end() :]}")
        raise LogsDirUnusable(f"LOGS_DIR {shown} is a bucket; this command works on a local log folder only")
    path = Path(text)
    try:
        if not path.is_dir():
            reason = "is not a folder" if path.exists() else "does not exist"
            raise LogsDirUnusable(f"LOGS_DIR {path} {reason}; set LOGS_DIR to the folder the agents write their logs into")
        if not os.access(path, os.R_OK | os.X_OK):
            raise LogsDirUnusable(f"LOGS_DIR {path} cannot be read: permission denied")
    except OSError as error:  # a name too long, a loop of links
        raise LogsDirUnusable(f"LOGS_DIR {path} cannot be read: {error.strerror or error}") from None
    return path


@dataclass(frozen=True)
class BucketSettings:
    """How a bucket source (LOGS_DIR=s3://...) reads, marks and lists. Credentials and the endpoint are
    never settings of this project: the AWS SDK reads them (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL ...)."""

    processed_prefix: str  # S3_PROCESSED_PREFIX: stored objects are moved under it (copy, then delete); empty: never moved
    quarantine_prefix: str  # S3_QUARANTINE_PREFIX: a copy of each rejected object is put under it; empty: no copy
    concurrency: int  # S3_CONCURRENCY: GETs in flight per process
    timeout_seconds: float  # S3_TIMEOUT_SECONDS: to connect, and for each read from the server
    tick_seconds: float  # S3_TICK_SECONDS: listing time one sensor tick may spend
    reconcile_seconds: float  # S3_RECONCILE_SECONDS: a full listing of the prefix starts at most this often


def bucket_settings(environ: Mapping[str, str] = os.environ) -> BucketSettings:
    return BucketSettings(
        processed_prefix=environ.get("S3_PROCESSED_PREFIX", "").strip().lstrip("/"),
        quarantine_prefix=environ.get("S3_QUARANTINE_PREFIX", "").strip().lstrip("/"),
        concurrency=max(1, int(_number("S3_CONCURRENCY", 16, environ))),
        timeout_seconds=max(0.5, _number("S3_TIMEOUT_SECONDS", 10.0, environ)),
        tick_seconds=max(1.0, _number("S3_TICK_SECONDS", 10.0, environ)),
        reconcile_seconds=max(0.0, _number("S3_RECONCILE_SECONDS", 300.0, environ)),
    )


def quality_thresholds(environ: Mapping[str, str] = os.environ) -> QualityThresholds:
    """The quality gates' thresholds: QUALITY_* variables, else the defaults of QualityThresholds."""
    default = QualityThresholds()

    def number(name: str, value: float) -> float:
        return _number(name, value, environ)

    return QualityThresholds(
        max_unpriced_share=number("QUALITY_MAX_UNPRICED_SHARE", default.max_unpriced_share),
        max_parse_failures=int(number("QUALITY_MAX_PARSE_FAILURES", default.max_parse_failures)),
        max_pass_rate_drop=number("QUALITY_MAX_PASS_RATE_DROP", default.max_pass_rate_drop),
        min_check_runs=int(number("QUALITY_MIN_CHECK_RUNS", default.min_check_runs)),
        min_drop_z=number("QUALITY_MIN_DROP_Z", default.min_drop_z),
        cost_spike_factor=number("QUALITY_COST_SPIKE_FACTOR", default.cost_spike_factor),
        min_baseline_cost=Decimal(str(number("QUALITY_MIN_BASELINE_COST", float(default.min_baseline_cost)))),
        baseline_days=max(1, int(number("QUALITY_BASELINE_DAYS", default.baseline_days))),
        min_baseline_days=max(1, int(number("QUALITY_MIN_BASELINE_DAYS", default.min_baseline_days))),
        lookback_days=max(1, int(number("QUALITY_LOOKBACK_DAYS", default.lookback_days))),
        min_judge_kappa=number("QUALITY_MIN_JUDGE_KAPPA", default.min_judge_kappa),
        min_agreement_pairs=max(1, int(number("QUALITY_MIN_AGREEMENT_PAIRS", default.min_agreement_pairs))),
    )


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str  # ALERT_WEBHOOK_URL; empty: no alerts are recorded or sent
    webserver_url: str  # DAGSTER_WEBSERVER_URL, for links to runs; empty: no links
    timeout_seconds: float  # ALERT_TIMEOUT_SECONDS, per POST


def alert_settings(environ: Mapping[str, str] = os.environ) -> AlertSettings:
    return AlertSettings(
        webhook_url=environ.get("ALERT_WEBHOOK_URL", "").strip(),
        webserver_url=environ.get("DAGSTER_WEBSERVER_URL", "").strip().rstrip("/"),
        timeout_seconds=max(0.5, _number("ALERT_TIMEOUT_SECONDS", 10.0, environ)),
    )


DEFAULT_JUDGES_FILE = "judges.yaml"


def judges_file(environ: Mapping[str, str] = os.environ) -> tuple[Path, bool]:
    """Where the LLM judges are declared, and whether JUDGES_FILE named it (then it must exist);
    default ./judges.yaml, which may be absent (no judges)."""
    named = environ.get("JUDGES_FILE", "").strip()
    return (Path(named), True) if named else (Path(DEFAULT_JUDGES_FILE), False)


DEFAULT_HISTORY_START_DATE = "2024-01-01"


def history_start_date() -> str:
    """First partition day: HISTORY_START_DATE (YYYY-MM-DD), default 2024-01-01. Runs before it are in no partition.

    Read when Dagster loads the definitions (defs/partitions.py), not when used: Dagster needs an
    asset's partitions at definition time."""
    return os.environ.get("HISTORY_START_DATE", "").strip() or DEFAULT_HISTORY_START_DATE


# ---------------------------------------------------------------------------- governance: prices, redaction, retention

DEFAULT_PRICES_FILE = "prices.yaml"


def prices_file(environ: Mapping[str, str] = os.environ) -> Path | None:
    """PRICES_FILE, else ./prices.yaml when it exists, else None (genai-prices alone).

    A PRICES_FILE that does not exist is an error, never taken for "no custom prices": a typo would
    otherwise price every run at list price without a word."""
    named = environ.get("PRICES_FILE", "").strip()
    if not named:
        default = Path(DEFAULT_PRICES_FILE)
        return default if default.is_file() else None
    path = Path(named)
    if not path.is_file():
        reason = "is not a file" if path.exists() else "does not exist"
        raise InvalidSetting(f"PRICES_FILE {path} {reason}")
    return path


@dataclass(frozen=True)
class RedactionSettings:
    detectors: str  # REDACT as written: a comma list of detectors, "all" or "none" (default "secret")
    patterns_file: Path | None  # REDACT_PATTERNS_FILE: extra patterns (YAML), or None


def redaction_settings(environ: Mapping[str, str] = os.environ) -> RedactionSettings:
    named = environ.get("REDACT_PATTERNS_FILE", "").strip()
    patterns_file = Path(named) if named else None
    if patterns_file is not None and not patterns_file.is_file():
        raise InvalidSetting(f"REDACT_PATTERNS_FILE {patterns_file} {'is not a file' if patterns_file.exists() else 'does not exist'}")
    return RedactionSettings(detectors=environ.get("REDACT", ""), patterns_file=patterns_file)


@dataclass(frozen=True)
class RetentionSettings:
    days: int | None  # RETENTION_DAYS: delete runs started longer ago than this; None: keep them
    raw_days: int | None  # RETENTION_RAW_DAYS: drop the raw logs of runs started longer ago; None: keep them

    @property
    def enabled(self) -> bool:
        return self.days is not None or self.raw_days is not None


def retention_settings(environ: Mapping[str, str] = os.environ) -> RetentionSettings:
    return RetentionSettings(days=_days("RETENTION_DAYS", environ), raw_days=_days("RETENTION_RAW_DAYS", environ))


def _days(name: str, environ: Mapping[str, str]) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1_000_000:
        raise InvalidSetting(f"{name} must be a whole number of days from 1 to 1,000,000 (or unset to keep everything), got {raw!r}")
    return int(raw)


def retention_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether RETENTION_DAYS or RETENTION_RAW_DAYS is set (to anything: a bad value fails the run that reads it).

    Read when Dagster loads the definitions: the retention schedule starts running when it is true."""
    return any(environ.get(name, "").strip() for name in ("RETENTION_DAYS", "RETENTION_RAW_DAYS"))
