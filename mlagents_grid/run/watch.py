"""Wake a process when files appear in queue folders: inotify locally, polling on shared disks."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ..queue.mounts import is_shared

POLL_INTERVAL = 1.0  # seconds between looks at a shared folder, where inotify sees no other host
# How long leaving a watch may take before the process goes on without it (its threads are
# daemons and end with the process).
STOP_WAIT = 5.0

# watchdog 7's recursive inotify watch warns, with its whole table of watches (kilobytes per
# line), each time a new folder is scanned while its creation event is queued: trainers make
# such folders all the time, and the watch is right either way.
warnings.filterwarnings(
    "ignore", message="Callback with id", category=RuntimeWarning, module="watchdog"
)


def _not_the_stop_race(record: logging.LogRecord) -> bool:
    """watchdog 7 logs an error when a watch is stopped while its thread reads an event:
    harmless, and every stop of a busy watch would end with it."""
    return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_not_the_stop_race)


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
        # watchdog's stop waits for its emitter threads with no timeout: were one stuck, a
        # worker or monitor told to stop would never get to let go of its claims.
        stopping = threading.Thread(target=self.observer.stop, name="watch-stop", daemon=True)
        stopping.start()
        stopping.join(STOP_WAIT)
        self.observer.join(STOP_WAIT)
