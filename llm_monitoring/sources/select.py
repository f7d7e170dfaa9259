"""The source LOGS_DIR names: a local folder or an S3-compatible bucket."""

from __future__ import annotations

import os

from llm_monitoring.config import BucketLocation, Settings, check_logs_location, get_settings
from llm_monitoring.sources.base import LogSource
from llm_monitoring.sources.local import LocalDirectorySource
from llm_monitoring.sources.s3 import S3Source


def open_source(
    logs_dir: str | os.PathLike[str] | None = None,
    *,
    settings: Settings | None = None,
    glob: str | None = None,
    processed_prefix: str | None = None,
    processed_dir: str | None = None,
) -> LogSource:
    """The source of `logs_dir` (default LOGS_DIR); LogsDirUnusable if it names neither a folder nor a
    bucket. Nothing is listed yet: a bucket's credentials and existence are checked when it is."""
    settings = settings or get_settings()
    location = check_logs_location(logs_dir if logs_dir is not None else settings.logs_dir)
    if isinstance(location, BucketLocation):
        return S3Source(location, glob=glob or settings.log_file_glob, max_object_bytes=settings.max_log_bytes)
    return LocalDirectorySource(
        location,
        glob=glob or settings.log_file_glob,
        processed_prefix=settings.processed_prefix if processed_prefix is None else processed_prefix,
        processed_dir=settings.processed_dir if processed_dir is None else processed_dir,
        quarantine_dir=settings.quarantine_dir,
    )
