"""Settings from environment variables, read each time they are asked for (never frozen at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}

DEFAULT_DATABASE_URL = "sqlite:///monitoring.db"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def _flag(*names: str) -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


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
        debug=_flag("DEBUG", "MONITORING_DEBUG"),
    )
