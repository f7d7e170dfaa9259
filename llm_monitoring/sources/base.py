"""What every log source shares: the LogSource protocol, the records it returns, its exceptions.

A source lists pending log files, reads them, and takes each out of the pending set once the
database has committed it (processed) or stored why it could not (quarantined). A local folder does
that by moving files; an object store by recording each object's version in the ledger.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llm_monitoring.storage.engine import Database

# Called with the text forms (file_names.name_text) of prefixed names; returns those the ingest gave.
KnownProcessed = Callable[[Sequence[str]], Collection[str]]


@dataclass(frozen=True)
class FileVersion:
    """What was at a name when it was read: the same inode, size and mtime mean the same bytes."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    content_hash: str | None = field(default=None, compare=False)
    fresh: bool = field(default=False, compare=False)  # modified just before the read (FRESH_SECONDS)


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object in a bucket: the same key and ETag (and version id, where the bucket
    keeps versions) mean the same bytes. The listing gives key, ETag, size and last-modified time, so
    a version is known without reading the object."""

    key: str  # the whole key in the bucket
    etag: str  # without its quotes
    size: int
    mtime_ns: int = field(compare=False)  # last modified; second precision in some answers, so not compared
    version_id: str | None = field(default=None, compare=False)  # known once read
    content_hash: str | None = field(default=None, compare=False)
    fresh: bool = field(default=False, compare=False)


# What the ingest hands back to its source with each file: the version it read.
SourceVersion = FileVersion | ObjectVersion


@dataclass(frozen=True, order=True)
class LogFile:
    mtime: float
    name: str
    size: int
    kind: str = "file"  # or what else the entry is ("symbolic link", "FIFO", "folder", ...): never opened
    version: SourceVersion | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReadLog:
    raw: bytes
    version: SourceVersion


@dataclass(frozen=True)
class Finished:
    """A file the ingest is done with: stored (or found stored), or quarantined with its reason."""

    name: str
    version: SourceVersion | None
    content_hash: str  # of its bytes; for an entry that could not be read, its ingest_errors key
    location: str | None  # where it is now (moved, copied), None when it stayed where it was
    quarantined: bool = False


class FileChanged(Exception):
    """The file at a name is no longer the version that was read: it stays pending for the next pass."""


class NotALogFile(Exception):
    """An entry that is not a regular file (a symbolic link, a FIFO, ...): it is never opened."""


class OutsideLogFolder(ValueError):
    """A name that does not resolve to an entry directly inside the log folder."""


class SourceUnavailable(Exception):
    """The source cannot be reached or used (no credentials, no such bucket, access denied, a
    timeout). Never about one file: the pass fails in one line, nothing is marked processed, and the
    next pass or tick tries again. `transient`: an outage that a retry within seconds may outlast, as
    opposed to a setting to fix (credentials, the bucket's name, its policy)."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


def glob_patterns(glob: str) -> tuple[str, ...]:
    """LOG_FILE_GLOB's comma-separated patterns, lower-cased (names are matched case-insensitively)."""
    return tuple(pattern.strip() for pattern in glob.lower().split(",") if pattern.strip()) or ("*.json",)


def matches_glob(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in patterns)


class LogSource(Protocol):
    # A folder's files can grow (JSON Lines an agent appends to: read in place, by offset); a
    # bucket's objects cannot (a JSON Lines object is read whole, like any other object).
    reads_in_place: bool

    def describe(self) -> str: ...

    def list_pending(self, known_processed: KnownProcessed | None = None) -> list[LogFile]: ...

    def select_pending(self, database: Database, names: Sequence[str] | None) -> tuple[list[str], int]:
        """The names a pass ingests: every pending one (None) or those of `names` the ledger does not
        hold; and how many of `names` it holds (counted as already stored, never read)."""
        ...

    def name_problem(self, name: str) -> str | None: ...

    def prefetch(self, names: Sequence[str]) -> None:
        """The names a batch reads next, in order: a source that can read ahead starts reading."""
        ...

    def stat(self, name: str) -> LogFile | None: ...

    def version(self, name: str) -> SourceVersion | None: ...

    def display(self, name: str) -> str: ...

    def relative(self, path: str) -> str: ...

    def holds(self, relative: str) -> bool: ...

    def name_for(self, text: str) -> str: ...

    def read(self, name: str) -> ReadLog: ...

    def entry_key(self, name: str) -> str: ...

    def mark_processed(self, name: str, version: SourceVersion, *, keep_name: bool = False) -> str | None: ...

    def quarantine(self, name: str, version: SourceVersion | None = None) -> str | None: ...

    def record_finished(self, database: Database, finished: Sequence[Finished]) -> None:
        """Record in the ledger the files a batch is done with (after their moves)."""
        ...

    def list_quarantined(self) -> list[str]: ...

    def quarantined_path(self, name: str) -> str: ...

    def restore_quarantined(self, name: str) -> str: ...
