"""Durable file writes: what a power cut cannot undo once the call has returned.

Every state change goes through `write_atomic`: the temporary file is written and fsynced,
renamed over its target, and then the folder itself is fsynced so the rename is on disk
too (ext4 and xfs may otherwise bring back an empty file or the old name after a crash).

On Windows a file that another process holds open cannot be replaced or removed (Python's
`open()` does not share delete access): a `grid-status --watch`, an editor or a virus
scanner reading a state file makes the rename fail with WinError 5 or 32 for a moment. So
every rename, replace and removal here waits such a sharing violation out (`patiently`),
and readers open with delete sharing, as filelock does, so that they never cause one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import GridError
from . import files_windows

IS_WINDOWS = sys.platform == "win32"
# How long a sharing violation is waited out before the operation fails: a reader holds a
# file for milliseconds, a virus scanner for a moment longer.
SHARING_WAIT = 5.0
SHARING_FIRST_DELAY = 0.001
SHARING_MAX_DELAY = 0.1
# ERROR_ACCESS_DENIED (a rename onto an open or delete-pending file), ERROR_SHARING_VIOLATION,
# ERROR_LOCK_VIOLATION.
SHARING_ERRORS = frozenset({5, 32, 33})

T = TypeVar("T")


class FileBusy(GridError):
    """A file could not be read for a while (held by another process, or not permitted).

    Never proof that the file is broken: callers skip its run for this pass and never set
    the file aside.
    """


def sharing_violation(exc: BaseException) -> bool:
    """Whether `exc` is Windows saying that another process holds the file for now."""
    return isinstance(exc, PermissionError) and getattr(exc, "winerror", None) in SHARING_ERRORS


def patiently(action: Callable[[], T], wait: float = SHARING_WAIT) -> T:
    """`action()`, retried with backoff while it meets a sharing violation, for up to `wait`
    seconds; then the last PermissionError is raised. Any other error is raised at once."""
    deadline: float | None = None
    delay = SHARING_FIRST_DELAY
    while True:
        try:
            return action()
        except PermissionError as exc:
            if not sharing_violation(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + wait
            if now >= deadline:
                raise
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, SHARING_MAX_DELAY)


def replace(source: Path, target: Path, wait: float = SHARING_WAIT) -> None:
    """os.replace, waiting out sharing violations."""
    patiently(lambda: os.replace(source, target), wait)


def rename(source: Path, target: Path, wait: float = SHARING_WAIT) -> None:
    """os.rename (a folder too), waiting out sharing violations."""
    patiently(lambda: os.rename(source, target), wait)


def unlink(path: Path, wait: float = SHARING_WAIT) -> None:
    """Remove a file, waiting out sharing violations; FileNotFoundError passes."""
    patiently(path.unlink, wait)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new name in `folder` durable (a no-op where folders cannot be opened)."""
    if IS_WINDOWS:
        return  # NTFS journals its metadata; a folder cannot be opened for fsync there
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Write a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    `durable=False` skips both fsyncs, for files that are rebuilt when lost (caches, the
    trainer config of the attempt being started).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def read_bytes(path: Path) -> bytes:
    """A file's bytes, opened so that it can be replaced or removed meanwhile (Windows), with
    sharing violations waited out. FileNotFoundError and PermissionError pass."""
    if not IS_WINDOWS:
        return path.read_bytes()
    return patiently(lambda: files_windows.read_sharing_delete(path))


def read_text(path: Path) -> str:
    """`read_bytes`, decoded as UTF-8."""
    return read_bytes(path).decode("utf-8")


def read_json(path: Path, fix: str = "restore it or remove the sweep") -> Any:
    """Parse a JSON file; FileNotFoundError passes, anything else unreadable is a GridError.

    An empty or cut-off file (what a crash before the data reached the disk leaves) is
    unreadable, never an empty record. A file that cannot be opened (PermissionError, after
    sharing violations were waited out) is FileBusy, never unreadable.
    """
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise FileBusy(f"{path}: cannot be opened now ({exc.strerror})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: unreadable ({exc}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GridError(f"{path}: unreadable ({exc}); {fix}") from None


def append_line(path: Path, text: str) -> None:
    """Append `text` (one line, newline included) in one write that concurrent appenders
    cannot overwrite, from any number of processes.

    POSIX O_APPEND moves to the end and writes in one step. The Windows C runtime emulates
    O_APPEND as a seek then a write, so two processes can write at the same offset; there
    the line is written through a handle opened with FILE_APPEND_DATA only, under an
    exclusive lock of the file's last possible byte (Wine, and some file servers, append
    as a seek then a write even then).
    """
    data = text.encode("utf-8")
    if IS_WINDOWS:
        patiently(lambda: files_windows.append(path, data))
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def names(folder: Path, suffix: str = ".json") -> list[str]:
    """Run ids with a file in `folder`, skipping temporary files."""
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [
        name[: len(name) - len(suffix)]
        for name in entries
        if not name.startswith(".") and name.endswith(suffix)
    ]


def sync_tree(folder: Path) -> None:
    """Flush everything written under `folder` in one call (per-file fsync costs too much there)."""
    if IS_WINDOWS:
        return
    syncfs = _libc_syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _libc_syncfs() -> Any:
    """Linux's syncfs(2), which flushes one filesystem rather than all of them."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").syncfs
    except (OSError, AttributeError):
        return None
