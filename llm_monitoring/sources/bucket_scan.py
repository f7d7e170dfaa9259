"""One sensor tick's look at a bucket: which objects to hand to ingest runs, and the cursor after it.

Listing a prefix of 1,000,000 objects takes 1,000 requests, too many for one tick (Dagster gives a
sensor 60 s). So a tick lists incrementally, in two parts, both bounded by S3_TICK_SECONDS:

- **new keys**: from the watermark `after` (S3's StartAfter) on. Every key up to `after` has been
  handed to a run, is in the ledger, or is not a log. A key that cannot be handed out yet (written
  within SETTLE_SECONDS, or past the tick's cap of objects) stops the watermark, so it is listed again
  next tick. With keys that sort in the order they are written (a date or time in the name, as the
  sample writer and most agents do), a new object is requested on the next tick.
- **the reconcile sweep**: a full walk of the prefix, a few pages per tick, started every
  S3_RECONCILE_SECONDS. It finds what the watermark cannot: keys written behind it (names not in time
  order, a slow upload) and keys overwritten with new bytes (a new ETag).

A run that fails hands its objects back: the watermark moves back before the first of them, and
the next tick requests them again. The cursor is a few keys and numbers, never a set of seen keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field, replace

from llm_monitoring.sources.base import ObjectVersion
from llm_monitoring.sources.s3 import S3Source


@dataclass(frozen=True)
class ScanCursor:
    after: str = ""  # whole key; every log up to it has been handed out or is recorded
    sweep: str | None = None  # where the running reconcile sweep goes on (StartAfter); None: none running
    swept_at: float = 0.0  # when the last sweep started (unix time)
    generation: int = 0  # ticks that requested runs: part of each run key
    checked_at: float = 0.0  # failed runs up to this time have been handed back

    def text(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str | None) -> ScanCursor:
        """The cursor of a previous tick; a fresh one for none, or for the folder sensor's cursor (a
        number) after LOGS_DIR changed to a bucket."""
        try:
            values = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(values, dict):
            return cls()
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        try:
            return cls(**known)
        except TypeError:
            return cls()

    def handed_back(self, keys: Iterable[str]) -> ScanCursor:
        """The cursor with the watermark before the first of `keys` (objects of failed runs)."""
        first = min(keys, default=None)
        if first is None or first > self.after:
            return self
        return replace(self, after=first[:-1])  # StartAfter a string just before the key lists it again


@dataclass
class Scan:
    todo: list[ObjectVersion] = field(default_factory=list)  # to request, in key order
    cursor: ScanCursor = field(default_factory=ScanCursor)
    pages: int = 0
    listed: int = 0
    known: int = 0
    unsettled: int = 0
    busy: int = 0
    swept: bool = False  # the tick went on with a reconcile sweep
    capped: bool = False  # more objects were pending than one tick hands out

    def line(self, seconds: float) -> str:
        sweep = ", reconcile sweep under way" if self.cursor.sweep is not None else ""
        return (
            f"listed {self.listed} objects in {self.pages} pages in {seconds:.2f}s: {len(self.todo)} to ingest, "
            f"{self.known} already recorded, {self.unsettled} still being written, {self.busy} in queued or running runs{sweep}"
        )


KnownLookup = Callable[[list[ObjectVersion]], Collection[tuple[str, str]]]


def scan_bucket(
    source: S3Source,
    cursor: ScanCursor,
    *,
    known: KnownLookup,
    busy: Collection[str],
    capacity: int,
    settle_seconds: float,
    tick_seconds: float,
    reconcile_seconds: float,
    now: float | None = None,
) -> Scan:
    """List from the watermark, then go on with the sweep while time and capacity remain.

    `known` gives the (key, etag) pairs the ledger holds among a page's objects, `busy` the names
    in queued or running runs. Raises SourceUnavailable (the tick then changes nothing)."""
    now = time.time() if now is None else now
    deadline = time.monotonic() + tick_seconds
    scan = Scan(cursor=cursor)
    settled_before = now - settle_seconds
    after = cursor.after
    blocked = False
    for page in source.pages(cursor.after, deadline=deadline):
        scan.pages += 1
        for version in _pending(source, page.versions, known, scan):
            if not _take(scan, source, version, busy, settled_before, capacity):
                blocked = True
                break
            after = version.key
        if blocked:
            break
        if page.versions:
            after = page.versions[-1].key  # the rest of the page is recorded or not a log
        if page.last or scan.capped:
            break
    # Listing from the start of the prefix walks all of it, as a sweep does: the next sweep is due later.
    swept_at = now if not cursor.after and cursor.sweep is None else cursor.swept_at
    scan.cursor = replace(cursor, after=after, swept_at=swept_at)
    if blocked or time.monotonic() >= deadline:
        return scan
    sweep = cursor.sweep
    if sweep is None and now - swept_at >= reconcile_seconds:
        sweep, swept_at = "", now
    if sweep is None or not cursor.after:  # nothing behind the watermark yet: nothing to sweep
        scan.cursor = replace(scan.cursor, sweep=None, swept_at=swept_at)
        return scan
    scan.swept = True
    for page in source.pages(sweep, deadline=deadline):
        scan.pages += 1
        for version in _pending(source, page.versions, known, scan):
            if version.key > cursor.after:
                break  # the watermark's part of the prefix: listed above
            if not _take(scan, source, version, busy, settled_before, capacity):
                blocked = True
                break
            sweep = version.key
        if blocked:
            break
        if page.versions:
            sweep = min(page.versions[-1].key, cursor.after)
        if page.last or (page.versions and page.versions[-1].key >= cursor.after):
            sweep = None  # the whole prefix is walked
            break
    scan.cursor = replace(scan.cursor, sweep=sweep, swept_at=swept_at)
    return scan


def _pending(source: S3Source, versions: list[ObjectVersion], known: KnownLookup, scan: Scan) -> list[ObjectVersion]:
    """A page's log objects the ledger does not hold, in key order."""
    logs = [version for version in versions if source.matches(version.key)]
    scan.listed += len(versions)
    recorded = known(logs) if logs else ()
    scan.known += len(recorded)
    return [version for version in logs if (version.key, version.etag) not in recorded]


def _take(scan: Scan, source: S3Source, version: ObjectVersion, busy: Collection[str], settled_before: float, capacity: int) -> bool:
    """Hand `version` out (or pass it, when a run has it); False when it must wait for a later tick."""
    if source.name_of(version.key) in busy:
        scan.busy += 1
        return True
    if version.mtime_ns / 1e9 > settled_before:
        scan.unsettled += 1
        return False
    if len(scan.todo) >= capacity:
        scan.capped = True
        return False
    scan.todo.append(version)
    return True
