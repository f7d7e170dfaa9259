"""Where run logs come from: the LogSource protocol and its local-directory implementation.

A source lists pending log files, reads them, and moves each to its final place once the
database has committed it (processed) or stored why it could not (quarantined). Nothing is
ever deleted: a processed file keeps its bytes under a new name, a quarantined one in the
quarantine folder.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from llm_monitoring.config import Settings, get_settings


KnownProcessed = Callable[[Sequence[str]], Collection[str]]


@dataclass(frozen=True, order=True)
class LogFile:
    mtime: float
    name: str
    size: int


class LogSource(Protocol):
    def describe(self) -> str: ...

    def list_pending(self, known_processed: KnownProcessed | None = None) -> list[LogFile]: ...

    def stat(self, name: str) -> LogFile | None: ...

    def path_of(self, name: str) -> str: ...

    def relative(self, path: str) -> str: ...

    def read(self, name: str) -> bytes: ...

    def mark_processed(self, name: str) -> str | None: ...

    def quarantine(self, name: str) -> str | None: ...

    def list_quarantined(self) -> list[str]: ...

    def quarantined_path(self, name: str) -> str: ...

    def restore_quarantined(self, name: str) -> str: ...


class LocalDirectorySource:
    """Polls a local folder. Processed files are renamed with a prefix, or moved into a subfolder."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        glob: str = "*.json",
        processed_prefix: str = "_",
        processed_dir: str = "",
        quarantine_dir: str = "_quarantine",
    ) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # os.path on strings: pathlib costs more than the syscalls here
        self.glob = glob.lower()
        self.processed_dir = processed_dir
        # With no prefix, renaming in place would leave the file pending: move it into a folder instead.
        if not processed_prefix and not processed_dir:
            self.processed_dir = "_processed"
        self.processed_prefix = "" if self.processed_dir else processed_prefix
        self.quarantine_dir = quarantine_dir

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LocalDirectorySource:
        settings = settings or get_settings()
        return cls(
            settings.logs_dir,
            glob=settings.log_file_glob,
            processed_prefix=settings.processed_prefix,
            processed_dir=settings.processed_dir,
            quarantine_dir=settings.quarantine_dir,
        )

    def describe(self) -> str:
        marking = f"moved to {self.processed_dir}/" if self.processed_dir else f"renamed with prefix {self.processed_prefix!r}"
        return f"{self.root} ({self.glob}; processed files {marking})"

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name.lower(), self.glob)

    def list_pending(self, known_processed: KnownProcessed | None = None) -> list[LogFile]:
        """Pending files, oldest first: names and one stat per pending file, cheap on large folders.

        With prefix marking, a name that starts with the prefix is pending unless `known_processed`
        says the ingest gave it that name; without `known_processed` such names count as processed.
        """
        candidates: list[str] = []
        prefixed: list[str] = []
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            for entry in entries:
                if not self.matches(entry.name):
                    continue
                if self.processed_prefix and entry.name.startswith(self.processed_prefix):
                    prefixed.append(entry.name)
                else:
                    candidates.append(entry.name)
        if prefixed and known_processed is not None:
            done = known_processed(prefixed)
            candidates += [name for name in prefixed if name not in done]
        pending = [log_file for log_file in map(self.stat, candidates) if log_file is not None]
        pending.sort()
        return pending

    def stat(self, name: str) -> LogFile | None:
        try:
            info = os.stat(os.path.join(self._root, name), follow_symlinks=False)
        except FileNotFoundError:
            return None  # taken by another runner since the listing
        if not stat.S_ISREG(info.st_mode):
            return None
        return LogFile(info.st_mtime, name, info.st_size)

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def path_of(self, name: str) -> str:
        return os.path.join(self._root, name)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self._root, name), "rb") as handle:
            return handle.read()

    def mark_processed(self, name: str) -> str | None:
        """Move a stored file out of the pending set. Returns its new path, or None if it was already gone."""
        if self.processed_dir:
            return self._move(name, self.root / self.processed_dir)
        return self._move(name, self.root, prefix=self.processed_prefix)

    def quarantine(self, name: str) -> str | None:
        return self._move(name, self.root / self.quarantine_dir)

    def list_quarantined(self) -> list[str]:
        folder = self.root / self.quarantine_dir
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())

    def quarantined_path(self, name: str) -> str:
        return str(self.root / self.quarantine_dir / name)

    def restore_quarantined(self, name: str) -> str:
        source = self.root / self.quarantine_dir / name
        target = _free_name(self.root, name)
        os.replace(source, target)
        return str(target)

    def _move(self, name: str, folder: Path, prefix: str = "") -> str | None:
        if folder != self.root:
            folder.mkdir(parents=True, exist_ok=True)
        target = _free_name(folder, prefix + name)
        try:
            # os.link + unlink would be atomic against overwrite, but rename is atomic on one
            # filesystem and _free_name already avoids clobbering an earlier file of the same name.
            os.rename(self.root / name, target)
        except FileNotFoundError:
            return None  # another runner moved it first; its content is stored or quarantined there
        return str(target)


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or `name` with a counter before its suffix when that is taken."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    counter = 1
    while target.exists():
        target = folder / f"{stem}.{counter}{suffix}"
        counter += 1
    return target
