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
from llm_monitoring.database_url import mask_url

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
        log_file_glob=_env("LOG_FILE_GLOB", "*.json") or "*.json",
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


class LogsDirUnusable(ValueError):
    """LOGS_DIR names no folder this version can read; the message says why in one line."""


def check_logs_dir(logs_dir: str | os.PathLike[str]) -> Path:
    """The log folder, or LogsDirUnusable. A folder that is not there is said, never taken for an
    empty one: a typo in LOGS_DIR would otherwise look like a quiet day."""
    text = os.fspath(logs_dir)
    url = _URL_LIKE.match(text)  # Path("s3://bucket") is "s3:/bucket": match either form
    if url:
        shown = mask_url(f"{url.group('scheme')}://{text[url.end() :]}")
        raise LogsDirUnusable(
            f"LOGS_DIR {shown} is a {url.group('scheme')}:// URL; this version reads logs from a local folder only "
            "(object storage is not supported yet)"
        )
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
