"""Where run logs come from: the LogSource protocol, the local folder and S3-compatible buckets.

`open_source` picks the source LOGS_DIR names: a local folder, or `s3://bucket/prefix`.
"""

from llm_monitoring.sources.base import (
    FileChanged,
    FileVersion,
    Finished,
    KnownProcessed,
    LogFile,
    LogSource,
    NotALogFile,
    ObjectVersion,
    OutsideLogFolder,
    ReadLog,
    SourceUnavailable,
    SourceVersion,
)
from llm_monitoring.sources.local import (
    FRESH_SECONDS,
    FRESH_SECONDS_COARSE,
    LocalDirectorySource,
    entry_key,
    entry_kind,
    rename_noreplace,
)
from llm_monitoring.sources.s3 import S3Source
from llm_monitoring.sources.select import open_source

__all__ = [
    "FRESH_SECONDS",
    "FRESH_SECONDS_COARSE",
    "FileChanged",
    "FileVersion",
    "Finished",
    "KnownProcessed",
    "LocalDirectorySource",
    "LogFile",
    "LogSource",
    "NotALogFile",
    "ObjectVersion",
    "OutsideLogFolder",
    "ReadLog",
    "S3Source",
    "SourceUnavailable",
    "SourceVersion",
    "entry_key",
    "entry_kind",
    "open_source",
    "rename_noreplace",
]
