"""The local-folder log source: files moved once the database has committed them.

A processed file is renamed with a prefix or moved into a subfolder, a quarantined one into the
quarantine folder. Nothing is ever deleted: a file keeps its bytes under its new name.

The local source stays inside its folder: names are single path components (never a path), it
never follows a symbolic link, and it moves files only into real folders below the root. A file is
moved only if what is at its name is still the version that was read, so a file replaced during
a pass stays pending instead of being marked processed with content that was never stored.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

from llm_monitoring.config import DEFAULT_LOG_FILE_GLOB, Settings, get_settings
from llm_monitoring.file_names import name_from_text, name_text, numbered_name, plain_name_problem
from llm_monitoring.sources.base import (
    FileChanged,
    FileVersion,
    Finished,
    KnownProcessed,
    LogFile,
    NotALogFile,
    OutsideLogFolder,
    ReadLog,
    SourceVersion,
    glob_patterns,
    matches_glob,
)
from llm_monitoring.storage import ledger

if TYPE_CHECKING:
    from llm_monitoring.storage.engine import Database

# A write within the file system's timestamp granularity of a read can leave the mtime as it was:
# a file modified that recently when it was read is hashed again before it is moved. Nanosecond
# timestamps advance at least every clock tick (a few ms); whole-second ones (FAT keeps 2 s, some
# network file systems 1 s) much more slowly.
FRESH_SECONDS = 0.05
FRESH_SECONDS_COARSE = 2.0


class LocalDirectorySource:
    """Polls a local folder. Processed files are renamed with a prefix, or moved into a subfolder."""

    reads_in_place = True  # files an agent appends to (JSON Lines) stay and are read by offset

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        glob: str = DEFAULT_LOG_FILE_GLOB,
        processed_prefix: str = "_",
        processed_dir: str = "",
        quarantine_dir: str = "_quarantine",
    ) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # os.path on strings: pathlib costs more than the syscalls here
        self.glob = glob.lower()
        self._patterns = glob_patterns(glob)
        self.processed_dir = _subfolder(self._root, processed_dir, "PROCESSED_DIR")
        # With no prefix, renaming in place would leave the file pending: move it into a folder instead.
        if not processed_prefix and not self.processed_dir:
            self.processed_dir = "_processed"
        self.processed_prefix = "" if self.processed_dir else processed_prefix
        if "/" in self.processed_prefix or "\0" in self.processed_prefix:
            raise ValueError(f"PROCESSED_PREFIX must be the start of a file name, got {self.processed_prefix!r}")
        self.quarantine_dir = _subfolder(self._root, quarantine_dir, "QUARANTINE_DIR") or "_quarantine"

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
        return f"{name_text(self._root)} ({self.glob}; processed files {marking})"

    def matches(self, name: str) -> bool:
        return matches_glob(name, self._patterns)

    def select_pending(self, database: Database, names: Sequence[str] | None) -> tuple[list[str], int]:
        """Named files are taken as given (a stored file has been moved away); else every pending one."""
        if names is not None:
            return list(names), 0
        return [log_file.name for log_file in self.list_pending(partial(ledger.known_processed, database))], 0

    def name_problem(self, name: str) -> str | None:
        return plain_name_problem(name)

    def prefetch(self, names: Sequence[str]) -> None:
        """Reads are local and cheap: nothing to start ahead."""

    def record_finished(self, database: Database, finished: Sequence[Finished]) -> None:
        """The names stored files were moved to (quarantined files are in their folder: nothing to record)."""
        moves = [
            (name_text(item.name), self.relative(item.location), item.content_hash)
            for item in finished
            if item.location and not item.quarantined
        ]
        ledger.record_processed(database, moves)

    def list_pending(self, known_processed: KnownProcessed | None = None) -> list[LogFile]:
        """Pending entries, oldest first: names and one lstat per pending entry, cheap on large folders.

        Every entry the glob matches is pending except folders (a symbolic link or a FIFO is too:
        the ingest quarantines it with the reason). With prefix marking, a name that starts with the
        prefix is pending unless `known_processed` says the ingest gave it that name; without
        `known_processed` such names count as processed.
        """
        candidates: list[str] = []
        prefixed: list[str] = []
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            for entry in entries:
                if not self.matches(entry.name) or entry.is_dir(follow_symlinks=False):
                    continue
                if self.processed_prefix and entry.name.startswith(self.processed_prefix):
                    prefixed.append(entry.name)
                else:
                    candidates.append(entry.name)
        if prefixed and known_processed is not None:
            texts = {name_text(name): name for name in prefixed}
            done = known_processed(list(texts))
            candidates += [name for text, name in texts.items() if text not in done]
        pending = [log_file for log_file in map(self.stat, candidates) if log_file is not None and log_file.kind != "folder"]
        pending.sort()
        return pending

    def stat(self, name: str) -> LogFile | None:
        """The entry at `name`, without following a symbolic link; None if it is gone."""
        try:
            info = os.lstat(self._path(name))
        except FileNotFoundError:
            return None  # taken by another runner since the listing
        return LogFile(info.st_mtime, name, info.st_size, entry_kind(info.st_mode), _version(info))

    def version(self, name: str) -> FileVersion | None:
        try:
            return _version(os.lstat(self._path(name)))
        except FileNotFoundError:
            return None

    def display(self, name: str) -> str:
        """The path of `name` as one line of valid text, for the database and messages."""
        return name_text(f"{self._root}/{name}")

    def relative(self, path: str) -> str:
        inside = path.removeprefix(self._root + "/")
        return name_text(inside if inside != path else os.path.relpath(path, self._root))

    def holds(self, relative: str) -> bool:
        """Whether an entry is still at `relative` (a path as `relative` wrote it), links not followed."""
        return os.path.lexists(os.path.join(self._root, name_from_text(relative)))

    def path_of(self, name: str) -> str:
        return self._path(name)

    def name_for(self, text: str) -> str:
        """The name of an entry directly in the folder, from its text form (a run config's `files`)."""
        name = name_from_text(text)
        problem = plain_name_problem(name)
        if problem:
            raise OutsideLogFolder(f"refusing {name_text(name)!r}: {problem}; give names of files directly in {self.display('')}")
        return name

    def name_of_path(self, argument: str) -> str:
        """The name of a file given on the command line: a bare name in the folder, or a path (absolute or
        relative to the working directory) to a file directly in it. Refuses anything else."""
        if "/" not in argument:
            return self.name_for(name_text(argument))
        folder, name = os.path.split(os.path.abspath(argument))
        if plain_name_problem(name) or os.path.realpath(folder) != os.path.realpath(self._root):
            raise OutsideLogFolder(
                f"refusing {name_text(argument)}: not a file directly in the log folder {self.display('')}; "
                "nothing outside it is read or moved"
            )
        return name

    def read(self, name: str) -> ReadLog:
        """The bytes at `name` and the version they are. Raises NotALogFile for anything but a regular
        file (never opened, so a FIFO cannot block), FileChanged if it changed while being read."""
        started = time.time()
        # O_NOFOLLOW: a symbolic link swapped in since the listing is not followed either.
        descriptor = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            before = os.fstat(descriptor)
            if not stat.S_ISREG(before.st_mode):
                raise NotALogFile(f"not a regular file: {entry_kind(before.st_mode)}")
            chunks = []
            while chunk := os.read(descriptor, max(before.st_size + 1, 1 << 16)):
                chunks.append(chunk)
            after = os.fstat(descriptor)
        finally:
            os.close(descriptor)
        raw = b"".join(chunks)
        if _version(before) != _version(after) or len(raw) != after.st_size:
            raise FileChanged(f"{self.display(name)} changed while it was read")
        coarse = after.st_mtime_ns % 1_000_000_000 == 0
        fresh = started - after.st_mtime < (FRESH_SECONDS_COARSE if coarse else FRESH_SECONDS)
        return ReadLog(raw, _version(after, hashlib.sha256(raw).hexdigest(), fresh=fresh))

    def entry_key(self, name: str) -> str:
        """content_hash of the entry at `name` (read in blocks), or for one that cannot be read, a hash
        of its kind and name: the key of its row in ingest_errors."""
        return entry_key(self._path(name))

    def mark_processed(self, name: str, version: SourceVersion, *, keep_name: bool = False) -> str | None:
        """Take a stored file out of the pending set; returns its path, None if it is gone already.

        With `keep_name` (prefix marking, a prefixed file whose content was stored before) it stays
        where it is and only the ledger records it, so a file a crash left moved but unrecorded is
        never renamed a second time. Raises FileChanged, leaving the file pending, if what is at the
        name is not `version`."""
        if keep_name and self.processed_prefix and name.startswith(self.processed_prefix):
            path = self._path(name)
            if not _same_version(path, version):
                if not os.path.lexists(path):
                    return None
                raise FileChanged(f"{self.display(name)} was replaced since it was read")
            return path
        if self.processed_dir:
            return self._move(name, version, self.processed_dir, name)
        return self._move(name, version, "", self.processed_prefix + name)

    def quarantine(self, name: str, version: SourceVersion | None = None) -> str | None:
        return self._move(name, version, self.quarantine_dir, name)

    def list_quarantined(self) -> list[str]:
        folder = os.path.join(self._root, self.quarantine_dir)
        if not os.path.isdir(folder):
            return []
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries if not entry.is_dir(follow_symlinks=False))

    def quarantined_path(self, name: str) -> str:
        return os.path.join(self._root, self.quarantine_dir, name)

    def restore_quarantined(self, name: str) -> str:
        return _rename_to_free_name(self.quarantined_path(name), self._root, name)

    def _path(self, name: str) -> str:
        if "/" in name or "\0" in name or name in ("", ".", ".."):
            raise OutsideLogFolder(f"refusing {name_text(name)!r}: {plain_name_problem(name)}")
        return f"{self._root}/{name}"  # a name, never a path: no os.path.join needed (a hot path)

    def _move(self, name: str, version: SourceVersion | None, folder: str, new_name: str) -> str | None:
        path = self._path(name)
        current = self.version(name)
        if current is None:
            return None  # another runner moved it first; its content is stored or quarantined there
        if version is not None and current != version:
            raise FileChanged(f"{self.display(name)} was replaced since it was read")
        try:
            target = _rename_to_free_name(path, self._folder(folder), new_name)
        except FileNotFoundError:
            if not os.path.lexists(path):
                return None
            raise
        # Replaced between the check and the rename: put it back, pending, under its name or a free one.
        if version is not None and not _same_version(target, version):
            _rename_to_free_name(target, self._root, name)
            raise FileChanged(f"{self.display(name)} was replaced while it was being moved")
        return target

    def _folder(self, relative: str) -> str:
        """A folder below the root, created if missing; never through a symbolic link."""
        path = self._root
        for part in relative.split("/") if relative else ():
            path = os.path.join(path, part)
            try:
                os.mkdir(path)
            except FileExistsError:
                info = os.lstat(path)
                if not stat.S_ISDIR(info.st_mode):
                    raise NotADirectoryError(
                        f"{name_text(path)} is a {entry_kind(info.st_mode)}, not a folder: files are only moved into folders inside {self.display('')}"
                    ) from None
        return path


def _subfolder(root: str, value: str, setting: str) -> str:
    """A setting naming a folder below the log folder, as a relative path; refuses any other place."""
    if os.path.isabs(value):
        relative = os.path.relpath(value, root)
    else:
        relative = value
    parts = [part for part in relative.split(os.sep) if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{setting} must be a folder inside LOGS_DIR ({name_text(root)}), got {value!r}")
    return "/".join(parts)


_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symbolic link (never followed)",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFDIR: "folder",
}


def entry_kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def entry_key(path: str) -> str:
    """sha256 of a regular file's bytes, read in blocks; for an entry that cannot be read (not a
    regular file, no permission), a hash of what it is and its name."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        return _unreadable_key(path, type(error).__name__)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            return _unreadable_key(path, entry_kind(info.st_mode))
        digest = hashlib.sha256()
        while block := os.read(descriptor, 1 << 20):
            digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(descriptor)


def _unreadable_key(path: str, what: str) -> str:
    return hashlib.sha256(b"unreadable\0" + what.encode() + b"\0" + os.fsencode(os.path.basename(path))).hexdigest()


def _version(info: os.stat_result, content_hash: str | None = None, *, fresh: bool = False) -> FileVersion:
    return FileVersion(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, content_hash, fresh)


def _same_version(path: str, version: FileVersion) -> bool:
    try:
        if _version(os.lstat(path)) != version:
            return False
    except FileNotFoundError:
        return False
    if version.fresh and version.content_hash is not None:
        return entry_key(path) == version.content_hash
    return True


def _rename_to_free_name(path: str, folder: str, name: str) -> str:
    """Rename `path` into `folder` as `name`, or as name.1, name.2 ... when taken; names shortened to fit."""
    for number in count():
        target = os.path.join(folder, numbered_name(name, number))
        try:
            rename_noreplace(path, target)
        except FileExistsError:
            continue
        return target
    raise AssertionError("unreachable")


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _load_renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _load_renameat2()


def rename_noreplace(source: str, target: str) -> None:
    """Rename that never replaces an existing target (FileExistsError instead), atomically where the
    kernel and file system offer RENAME_NOREPLACE: two runners can never overwrite each other's file."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), source, None, target)
    # No atomic variant here: check, then rename (a race between two runners can still clobber).
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)
