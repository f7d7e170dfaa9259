"""Log files in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, GCS's S3 API): LOGS_DIR=s3://bucket/prefix.

An object is a log file; its name for the ingest (and in a run's `files` config) is its key relative
to the prefix. Objects are never renamed, and by default never moved or deleted (a bucket may be
shared): the ledger (storage/objects.py) records each object the ingest is done with by key and ETag.
A listing gives both, so a known object is skipped without a GET, and a key overwritten with new bytes
(a new ETag) is a new object. A GET asks for the listed ETag (If-Match): bytes that changed since the
listing are never stored under the old version.

Credentials, region and endpoint come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, the shared
config files, AWS_ENDPOINT_URL for other servers); they are never read or shown here.

boto3, not obstore: measured against moto on 127.0.0.1 obstore used a quarter of boto3's client CPU
per GET, but its runtime hangs in a forked child once the parent has used it, and the ingest forks its
workers after listing (figures in docs/object-storage.md). Clients and thread pools are made lazily in
the process that uses them (checked by pid), never inherited through fork or pickled.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llm_monitoring.config import DEFAULT_LOG_FILE_GLOB, BucketLocation, BucketSettings, Settings, bucket_settings, get_settings
from llm_monitoring.sources.base import (
    Finished,
    KnownProcessed,
    LogFile,
    ObjectVersion,
    OutsideLogFolder,
    ReadLog,
    SourceVersion,
    glob_patterns,
    matches_glob,
)
from llm_monitoring.sources.s3_errors import s3_failure
from llm_monitoring.storage.objects import ObjectRecord, known_objects, record_objects

if TYPE_CHECKING:
    from llm_monitoring.storage.engine import Database

PAGE_KEYS = 1000  # the most one ListObjectsV2 answer holds


@dataclass(frozen=True)
class ListingPage:
    versions: list[ObjectVersion]  # every object of the page, logs or not, in key order
    last: bool  # no key after this page under the prefix


class S3Source:
    """Objects under `s3://bucket/prefix` whose last key segment matches `glob`."""

    reads_in_place = False  # objects never grow: a JSON Lines object is read whole, like any other

    def __init__(
        self,
        location: BucketLocation,
        *,
        glob: str = DEFAULT_LOG_FILE_GLOB,
        options: BucketSettings | None = None,
        max_object_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        options = options or bucket_settings()
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.glob = glob.lower()
        self.processed_prefix = options.processed_prefix
        self.quarantine_prefix = options.quarantine_prefix
        for setting, value in (("S3_PROCESSED_PREFIX", self.processed_prefix), ("S3_QUARANTINE_PREFIX", self.quarantine_prefix)):
            if value and self.prefix.startswith(value):
                raise ValueError(
                    f"{setting}={value!r} holds LOGS_DIR s3://{self.bucket}/{self.prefix} itself: every log would count as done; "
                    "give a prefix beside or below it"
                )
        self.concurrency = options.concurrency
        self.timeout_seconds = options.timeout_seconds
        self.max_object_bytes = max_object_bytes
        self._reset_process_state()

    @classmethod
    def from_settings(cls, location: BucketLocation, settings: Settings | None = None) -> S3Source:
        settings = settings or get_settings()
        return cls(location, glob=settings.log_file_glob, max_object_bytes=settings.max_log_bytes)

    # ------------------------------------------------------------------ per-process state (never inherited)

    def _reset_process_state(self) -> None:
        # Versions seen by this process's listings. Not sent to worker processes (a pass over 100,000
        # objects would pickle them with every batch): a worker lists its batch's range once instead.
        self._versions: dict[str, ObjectVersion] = {}
        self._listed_range = ("", "")  # keys listed whole by _resolve: one not found there does not exist
        self._pid = os.getpid()
        self._client_instance: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[str, Future[ReadLog]] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_versions", "_listed_range", "_client_instance", "_pool", "_ahead", "_queue", "_lock", "_pid"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's sockets and threads are not ours
            versions = self._versions
            self._reset_process_state()
            self._versions = versions

    def _client(self) -> Any:
        self._check_process()
        with self._lock:
            if self._client_instance is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=self.timeout_seconds,
                    read_timeout=self.timeout_seconds,
                    retries={"mode": "standard", "max_attempts": 3},
                    max_pool_connections=max(10, self.concurrency),
                    user_agent_extra="llm-monitoring",
                )
                self._client_instance = boto3.session.Session().client("s3", config=config)
            return self._client_instance

    def _executor(self) -> ThreadPoolExecutor:
        self._client()  # made here, before the threads share it
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-get")
        return self._pool

    def _endpoint(self) -> str:
        try:
            return str(self._client().meta.endpoint_url)
        except Exception:  # no region or a malformed endpoint: the error itself says it
            return "the S3 endpoint"

    def _failure(self, error: BaseException, doing: str) -> BaseException:
        return s3_failure(error, doing, bucket=self.bucket, endpoint=self._endpoint(), timeout=self.timeout_seconds)

    # ------------------------------------------------------------------ names

    def describe(self) -> str:
        marking = f"moved under {self.processed_prefix}" if self.processed_prefix else "recorded by key and ETag, never moved"
        return f"s3://{self.bucket}/{self.prefix} ({self.glob}; processed objects {marking})"

    def key_of(self, name: str) -> str:
        return self.prefix + name

    def name_of(self, key: str) -> str:
        return key[len(self.prefix) :]

    def matches(self, key: str) -> bool:
        """A log object: under the prefix, not a folder marker, not moved or copied by the ingest, glob on its last segment."""
        if not key.startswith(self.prefix) or key.endswith("/"):
            return False
        if (self.processed_prefix and key.startswith(self.processed_prefix)) or (
            self.quarantine_prefix and key.startswith(self.quarantine_prefix)
        ):
            return False
        return matches_glob(key.rpartition("/")[2], glob_patterns(self.glob))

    def name_problem(self, name: str) -> str | None:
        if not name:
            return "an empty name"
        if "\0" in name:
            return "a NUL character"
        if len(self.key_of(name).encode()) > 1024:
            return "longer than an S3 key may be (1,024 bytes)"
        return None

    def name_for(self, text: str) -> str:
        """A run config's name: a key relative to the prefix."""
        problem = self.name_problem(text)
        if problem:
            raise OutsideLogFolder(f"refusing {text!r}: {problem}; give keys relative to s3://{self.bucket}/{self.prefix}")
        return text

    def name_of_path(self, argument: str) -> str:
        """A name from the command line: a key relative to the prefix, or an s3:// URL under it."""
        url_prefix = f"s3://{self.bucket}/"
        if argument.startswith("s3://"):
            if not argument.startswith(url_prefix + self.prefix):
                raise OutsideLogFolder(f"refusing {argument}: not under LOGS_DIR s3://{self.bucket}/{self.prefix}; nothing else is read")
            argument = argument[len(url_prefix + self.prefix) :]
        return self.name_for(argument)

    def display(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key_of(name)}"

    def relative(self, path: str) -> str:
        return path.removeprefix(f"s3://{self.bucket}/")

    def holds(self, relative: str) -> bool:
        """processed_files names only files a folder source moved; a bucket's ledger is source_objects,
        whose rows retention keeps (without them, objects of deleted runs would be ingested again)."""
        return True

    # ------------------------------------------------------------------ listing

    def pages(self, start_after: str = "", *, deadline: float | None = None, page_keys: int = PAGE_KEYS) -> Iterator[ListingPage]:
        """Listing pages under the prefix, keys after `start_after`, until the end or `deadline`
        (time.monotonic; the first page is always listed)."""
        client = self._client()
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": page_keys}
        if start_after:
            request["StartAfter"] = start_after
        while True:
            try:
                answer = client.list_objects_v2(**request)
            except Exception as error:
                raise self._failure(error, f"listing s3://{self.bucket}/{self.prefix}") from None
            versions = [_listed_version(entry) for entry in answer.get("Contents", ())]
            last = not answer.get("IsTruncated")
            yield ListingPage(versions, last)
            if last or (deadline is not None and time.monotonic() >= deadline):
                return
            request["ContinuationToken"] = answer["NextContinuationToken"]

    def list_pending(self, known_processed: KnownProcessed | None = None) -> list[LogFile]:
        """Every log object under the prefix, in key order (the ledger's filter is select_pending's)."""
        log_files = []
        for page in self.pages():
            for version in page.versions:
                if self.matches(version.key):
                    name = self.name_of(version.key)
                    self._versions[name] = version
                    log_files.append(_log_file(name, version))
        return log_files

    def select_pending(self, database: Database, names: Sequence[str] | None) -> tuple[list[str], int]:
        """Listed (or named) objects whose key and ETag the ledger does not hold; named ones it holds are counted."""
        if names is None:
            candidates = [log_file.name for log_file in self.list_pending()]
        else:
            candidates = list(dict.fromkeys(names))
            self._resolve(candidates)
        versions = {name: self._versions[name] for name in candidates if name in self._versions}
        known = known_objects(database, self.bucket, {(version.key, version.etag) for version in versions.values()})
        pending = [name for name in candidates if name not in versions or (versions[name].key, versions[name].etag) not in known]
        return pending, (len(candidates) - len(pending) if names is not None else 0)

    def _resolve(self, names: Sequence[str]) -> None:
        """Versions of named objects: one listing over the range of keys they span when it is short (a
        sensor's run names keys listed together), a HEAD for each one it does not cover."""
        wanted = sorted({self.key_of(name) for name in names if name not in self._versions})
        if not wanted:
            return
        covered_from, covered_to = wanted[0][:-1], ""
        # A page about the size of the batch: a dense range (a pass's batch, a sensor's run) is one request.
        page_keys = min(PAGE_KEYS, len(wanted) + len(wanted) // 4 + 8)
        pages_allowed = len(wanted) // page_keys + 2
        for number, page in enumerate(self.pages(wanted[0][:-1], page_keys=page_keys), start=1):
            for version in page.versions:
                self._versions.setdefault(self.name_of(version.key), version)
            covered_to = page.versions[-1].key if page.versions else covered_to
            if page.last:
                covered_to = "\U0010ffff"
            if covered_to >= wanted[-1] or number >= pages_allowed:
                break
        # Keys within the listed range and not in it do not exist: stat says so without asking.
        rest = [key for key in wanted if key > covered_to]
        if rest:
            for key, version in zip(rest, self._executor().map(self._head, rest), strict=True):
                if version is not None:
                    self._versions[self.name_of(key)] = version
        self._listed_range = (covered_from, covered_to)

    def _head(self, key: str) -> ObjectVersion | None:
        try:
            answer = self._client().head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            failure = self._failure(error, f"looking up s3://{self.bucket}/{key}")
            if isinstance(failure, FileNotFoundError):
                return None
            raise failure from None
        return ObjectVersion(
            key,
            answer["ETag"].strip('"'),
            int(answer["ContentLength"]),
            int(answer["LastModified"].timestamp() * 1e9),
            answer.get("VersionId"),
        )

    def version(self, name: str) -> ObjectVersion | None:
        version = self._versions.get(name)
        if version is None:
            key = self.key_of(name)
            if self._listed_range[0] < key <= self._listed_range[1]:
                return None  # in a range listed for this pass, and not there
            version = self._head(key)
            if version is not None:
                self._versions[name] = version
        return version

    def stat(self, name: str) -> LogFile | None:
        version = self.version(name)
        return None if version is None else _log_file(name, version)

    # ------------------------------------------------------------------ reading

    def prefetch(self, names: Sequence[str]) -> None:
        """Start GETs of a batch's objects, in order, at most twice S3_CONCURRENCY ahead of the reads:
        the transfers overlap parsing and storing, and memory stays bounded."""
        self._check_process()
        for future in self._ahead.values():
            future.cancel()
        self._ahead = {}
        self._resolve(names)
        self._queue = deque(
            name for name in names if (version := self._versions.get(name)) is not None and version.size <= self.max_object_bytes
        )
        self._fill()

    def _fill(self) -> None:
        pool = self._executor()
        while self._queue and len(self._ahead) < 2 * self.concurrency:
            name = self._queue.popleft()
            if name not in self._ahead:
                self._ahead[name] = pool.submit(self._get, name)

    def read(self, name: str) -> ReadLog:
        self._check_process()
        future = self._ahead.pop(name, None)
        try:
            return future.result() if future is not None else self._get(name)
        finally:
            if self._queue:
                self._fill()

    def _get(self, name: str) -> ReadLog:
        version = self.version(name)
        if version is None:
            raise FileNotFoundError(f"{self.display(name)} is gone")
        try:
            # If-Match: the bytes of the listed version, or PreconditionFailed if the key was overwritten since.
            answer = self._client().get_object(Bucket=self.bucket, Key=version.key, IfMatch=f'"{version.etag}"')
            raw = answer["Body"].read()
        except Exception as error:
            raise self._failure(error, f"reading {self.display(name)}") from None
        return ReadLog(raw, replace(version, version_id=answer.get("VersionId"), content_hash=hashlib.sha256(raw).hexdigest()))

    def entry_key(self, name: str) -> str:
        """The ingest_errors key of an object rejected unread (too large): its bucket, key and ETag."""
        version = self._versions.get(name)
        token = f"s3\0{self.bucket}\0{self.key_of(name)}\0{version.etag if version else ''}"
        return hashlib.sha256(token.encode()).hexdigest()

    # ------------------------------------------------------------------ marking

    def mark_processed(self, name: str, version: SourceVersion, *, keep_name: bool = False) -> str | None:
        """Where the stored object is now: moved under S3_PROCESSED_PREFIX (copy, then delete) when set,
        else where it was (the ledger alone takes it out of the pending set). None if it is gone."""
        if not self.processed_prefix:
            return self.display(name)
        assert isinstance(version, ObjectVersion)
        target = self.processed_prefix + name
        if not self._copy(version, target):
            return None
        try:
            self._client().delete_object(Bucket=self.bucket, Key=version.key)
        except Exception as error:
            raise self._failure(error, f"deleting {self.display(name)} after its copy") from None
        return f"s3://{self.bucket}/{target}"

    def quarantine(self, name: str, version: SourceVersion | None = None) -> str | None:
        """A copy under S3_QUARANTINE_PREFIX when set (the object itself stays); None otherwise."""
        if not self.quarantine_prefix or not isinstance(version, ObjectVersion):
            return None
        target = self.quarantine_prefix + name
        return f"s3://{self.bucket}/{target}" if self._copy(version, target) else None

    def _copy(self, version: ObjectVersion, target: str) -> bool:
        source = {"Bucket": self.bucket, "Key": version.key}
        try:
            self._client().copy_object(Bucket=self.bucket, Key=target, CopySource=source, CopySourceIfMatch=f'"{version.etag}"')
        except Exception as error:
            failure = self._failure(error, f"copying s3://{self.bucket}/{version.key} to {target}")
            if isinstance(failure, FileNotFoundError):
                return False
            raise failure from None
        return True

    def record_finished(self, database: Database, finished: Sequence[Finished]) -> None:
        records = [
            ObjectRecord(
                item.version.key,
                item.version.etag,
                item.version.version_id,
                item.version.size,
                item.content_hash,
                "quarantined" if item.quarantined else "stored",
                item.location if item.location and item.location != self.display(item.name) else None,
            )
            for item in finished
            if isinstance(item.version, ObjectVersion)
        ]
        record_objects(database, self.bucket, records)


def _listed_version(entry: dict[str, Any]) -> ObjectVersion:
    return ObjectVersion(entry["Key"], entry["ETag"].strip('"'), int(entry["Size"]), int(entry["LastModified"].timestamp() * 1e9))


def _log_file(name: str, version: ObjectVersion) -> LogFile:
    return LogFile(version.mtime_ns / 1e9, name, version.size, "file", version)
