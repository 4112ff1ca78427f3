"""A wake-up call that a signal handler may make: no lock is taken on either side.

`threading.Event.set` takes the event's lock. Called from a signal handler while the main
thread is inside `Event.wait` or `clear` (holding that lock), it deadlocks: a worker hung
this way for good when SLURM's `scancel` sent SIGTERM, and wrote nothing until SIGKILL. A
socket pair is the classic self-pipe: `set` writes a byte, `wait` selects on the other end.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from collections.abc import Callable

# What stops a worker or a monitor: Ctrl-C, SIGTERM (scancel, a shutdown) and, on Windows,
# Ctrl+Break and the closing of its console window, which Python both receives as SIGBREAK.
STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)) if s is not None
)


class Wakeup:
    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._on_signals = False

    def set(self) -> None:
        """Wake the waiter; from any thread or signal handler, any number of times."""
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            self._write.send(b"\0")

    def wake_on_signals(self) -> None:
        """Be set by every signal Python catches, before its handler runs (main thread only).

        Python's C-level handler writes a byte to the socket: a `wait` in the main thread
        ends at once, where Winsock's select() would not be interrupted by the signal.
        """
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._on_signals = True

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until `set` was called (since the last wait) or `timeout` passed."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        woken = bool(ready)
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            while self._read.recv(4096):
                pass
        return woken

    def close(self) -> None:
        """Close both ends; signals stop writing to this one first (a signal that came after
        would be written to a closed, perhaps reused, descriptor)."""
        if self._on_signals:
            signal.set_wakeup_fd(-1)
        self._read.close()
        self._write.close()


def catch_stop_signals(handler: Callable[[int, object], None], wake: Wakeup) -> None:
    """Install `handler` for every stop signal, and have each signal wake `wake` at once.

    A handler that only records the signal, where KeyboardInterrupt would be raised at any
    bytecode: inside a `threading` lock's bookkeeping it can leave the lock held, and the
    process hangs on its way out. Without the wake-up, a wait in `wake.wait` on Windows would
    see its Ctrl-C only when it times out: Winsock's select() is not interrupted by a signal.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    wake.wake_on_signals()
