"""Start a trainer in its own process group and end it without losing its model.

mlagents-learn saves a checkpoint and exits 0 on SIGINT, and has no SIGTERM handler, so a
stop is always SIGINT first, then SIGTERM and SIGKILL to the group and every descendant
(Unity players run in sessions of their own, out of reach of a group signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

from .launcher import IS_WINDOWS, Launcher

TERM_GRACE = 5.0


class Trainer:
    """One trainer process: started, watched and ended by the worker that claimed its run."""

    def __init__(
        self,
        launcher: Launcher,
        command: list[str],
        cwd: str,
        log: IO[bytes],
        inherit_fd: int | None = None,
        wake: threading.Event | None = None,
        echo: Callable[[bytes], None] | None = None,
    ) -> None:
        self.exited = threading.Event()
        self._returncode: int | None = None
        self._wake = wake
        self._adopter = launcher.pid
        self.known: dict[int, psutil.Process] = {}
        self._echo_thread: threading.Thread | None = None
        stdout = log.fileno()
        if echo is not None:
            # Started before the trainer, so that its exit is heard only after its output.
            read_end, stdout = os.pipe()
            self._echo_thread = threading.Thread(
                target=self._tee, args=(os.fdopen(read_end, "rb"), log, echo), daemon=True
            )
            self._echo_thread.start()
        try:
            self.pid = launcher.start(
                command, cwd, stdout, inherit_fd, new_console=echo is None, on_exit=self._on_exit
            )
        finally:
            if echo is not None:
                os.close(stdout)

    @staticmethod
    def _tee(output: IO[bytes], log: IO[bytes], echo: Callable[[bytes], None]) -> None:
        with output:
            for line in output:
                log.write(line)
                log.flush()
                echo(line)

    def _on_exit(self, code: int | None) -> None:
        self._returncode = code
        if self._echo_thread is not None:
            self._echo_thread.join(timeout=5)
        self.exited.set()
        if self._wake is not None:
            self._wake.set()

    @property
    def returncode(self) -> int | None:
        return self._returncode if self.exited.is_set() else None

    def remember_descendants(self) -> None:
        """Note every descendant now, while they can still be found from the trainer."""
        if not _has_children(self.pid):
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.known.setdefault(child.pid, child)

    def interrupt(self) -> None:
        """Ctrl-C for the trainer: mlagents-learn saves its model and exits."""
        self.remember_descendants()
        if IS_WINDOWS:
            self._signal_pid(self.pid, getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
        else:
            self._signal_group(signal.SIGINT)

    def terminate(self) -> None:
        self._escalate(signal.SIGTERM)

    def kill(self) -> None:
        self._escalate(getattr(signal, "SIGKILL", signal.SIGTERM))

    def _escalate(self, signum: int) -> None:
        self.remember_descendants()
        if not IS_WINDOWS:
            self._signal_group(signum)
        self._signal_pid(self.pid, signum)
        for process in list(self.known.values()):
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.send_signal(signum)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _signal_pid(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.kill(pid, signum)

    def leftovers(self) -> list[psutil.Process]:
        """Processes of the run still alive after the trainer itself has exited.

        Those remembered while the trainer ran, plus what the launcher adopted: as a
        subreaper it inherits every orphan the trainer left.
        """
        alive: dict[int, psutil.Process] = {}
        if _has_children(self._adopter):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self._adopter).children(recursive=True):
                    self.known.setdefault(child.pid, child)
        for process in self.known.values():
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive[process.pid] = process
        alive.pop(self.pid, None)
        return list(alive.values())

    def clean_up(self) -> int:
        """End whatever the run left behind (SIGTERM, then SIGKILL); returns how many."""
        left = self.leftovers()
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(left, timeout=TERM_GRACE)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=TERM_GRACE)
        return len(left)


def _has_children(pid: int) -> bool:
    """Cheaply, from /proc: whether `pid` has any child (psutil scans every process)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                if children.read().strip():
                    return True
        except OSError:
            return True
    return False


def open_log(path: Path, header: str) -> IO[bytes]:
    log = open(path, "ab")  # noqa: SIM115 - the trainer writes to it for the whole run
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {header} =====\n".encode())
    log.flush()
    return log
