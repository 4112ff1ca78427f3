"""Durable file writes: what a power cut cannot undo once the call has returned.

Every state change goes through `write_atomic`: the temporary file is written and fsynced,
renamed over its target, and then the folder itself is fsynced so the rename is on disk
too (ext4 and xfs may otherwise bring back an empty file or the old name after a crash).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import GridError

IS_WINDOWS = sys.platform == "win32"


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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def read_json(path: Path, fix: str = "restore it or remove the sweep") -> Any:
    """Parse a JSON file; FileNotFoundError passes, anything else unreadable is a GridError.

    An empty or cut-off file (what a crash before the data reached the disk leaves) is
    unreadable, never an empty record.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GridError(f"{path}: unreadable ({exc}); {fix}") from None


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
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").syncfs
    except (OSError, AttributeError):
        return None
