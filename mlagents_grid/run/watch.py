"""Wake a process when files appear in queue folders: inotify locally, polling on shared disks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ..queue.mounts import is_shared

POLL_INTERVAL = 1.0  # seconds between looks at a shared folder, where inotify sees no other host


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
