"""Wake a process when files appear in queue folders: inotify locally, polling on shared disks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

# inotify does not see files that other hosts write on these (README: Running on a cluster).
SHARED_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "cephfs", "ceph"}
)
POLL_INTERVAL = 1.0
MOUNTS = Path("/proc/mounts")


def filesystem_type(path: Path, mounts_file: Path = MOUNTS) -> str:
    """The type of the mount holding `path`, from /proc/mounts ("" when unknown)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open(mounts_file, encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def is_shared(path: Path, mounts_file: Path = MOUNTS) -> bool:
    kind = filesystem_type(path, mounts_file)
    return kind in SHARED_FILESYSTEMS or kind.startswith("fuse.")


class _Relay(FileSystemEventHandler):
    def __init__(self, on_path: Callable[[str], None]) -> None:
        self.on_path = on_path

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed", "closed_no_write"):
            return
        # An atomic write arrives as a move: the destination is the file that matters.
        path = getattr(event, "dest_path", "") or event.src_path
        self.on_path(os.fsdecode(path))


class FolderWatch:
    """Calls `on_path` (from the observer's thread) for each file created, moved or changed."""

    def __init__(
        self,
        folders: Iterable[Path],
        on_path: Callable[[str], None],
        polling: bool | None = None,
        recursive: bool = False,
    ) -> None:
        folders = list(folders)
        if polling is None:
            polling = any(is_shared(folder) for folder in folders)
        self.polling = polling
        self.observer: BaseObserver = (
            PollingObserver(timeout=POLL_INTERVAL) if polling else Observer()
        )
        relay = _Relay(on_path)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            self.observer.schedule(relay, str(folder), recursive=recursive)

    def __enter__(self) -> FolderWatch:
        self.observer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
