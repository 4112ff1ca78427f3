"""Start a trainer in its own process group and end it without losing its model.

mlagents-learn saves a checkpoint and exits 0 on SIGINT, and has no SIGTERM handler, so a
stop is always SIGINT first, then SIGTERM and SIGKILL to the group and every descendant
(Unity players run in sessions of their own, out of reach of a group signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TERM_GRACE = 5.0
IS_WINDOWS = sys.platform == "win32"


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _prctl()


def become_subreaper() -> None:
    """Adopt orphaned descendants, so a trainer's leftovers can still be found and ended."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _child_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:
        # A worker started with `&` or nohup passes on an ignored SIGINT, which would make
        # mlagents-learn impossible to stop gracefully.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGINT)

    return setup


# setpriv sets the parent-death signal and execs the trainer: half the cost of a Python
# preexec_fn, which forces a full fork of the worker. Either way the trainer gets SIGINT when
# its worker dies.
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _launch(command: list[str], new_console: bool) -> tuple[list[str], dict[str, object]]:
    """The command and Popen options that start a trainer in its own session."""
    if IS_WINDOWS:
        # As the original did: a console of its own per run, unless its output is echoed here.
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if new_console:
            flags |= getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
        return command, {"creationflags": flags}
    if SETPRIV is not None and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):
        # A handled SIGINT is reset to its default by exec, so the trainer can be interrupted.
        return [SETPRIV, "--pdeathsig", "INT", "--", *command], {"start_new_session": True}
    return command, {"start_new_session": True, "preexec_fn": _child_setup(os.getpid())}


class Trainer:
    """One trainer process: started, watched and ended by the worker that claimed its run."""

    def __init__(
        self,
        command: list[str],
        cwd: str,
        log: IO[bytes],
        inherit_fd: int | None = None,
        wake: threading.Event | None = None,
        echo: Callable[[bytes], None] | None = None,
    ) -> None:
        self.exited = threading.Event()
        self._wake = wake
        self.known: dict[int, psutil.Process] = {}
        self._echo_thread: threading.Thread | None = None
        pass_fds = () if inherit_fd is None else (inherit_fd,)
        argv, options = _launch(command, new_console=echo is None)
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if echo else log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            **options,  # type: ignore[call-overload]
        )
        self.pid = self.popen.pid
        if echo is not None:
            self._echo_thread = threading.Thread(target=self._tee, args=(log, echo), daemon=True)
            self._echo_thread.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _tee(self, log: IO[bytes], echo: Callable[[bytes], None]) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            log.write(line)
            log.flush()
            echo(line)

    def _wait(self) -> None:
        self.popen.wait()
        if self._echo_thread is not None:
            self._echo_thread.join(timeout=5)
        self.exited.set()
        if self._wake is not None:
            self._wake.set()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.exited.is_set() else None

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

        Those remembered while the trainer ran, plus this process's own descendants: as a
        subreaper the worker inherits every orphan the trainer left.
        """
        alive: dict[int, psutil.Process] = {}
        if _has_children(os.getpid()):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process().children(recursive=True):
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
        _reap_adopted()
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


def _reap_adopted() -> None:
    """Collect exit statuses of orphans this subreaper adopted, so no zombie remains."""
    if IS_WINDOWS:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def open_log(path: Path, header: str) -> IO[bytes]:
    log = open(path, "ab")  # noqa: SIM115 - the trainer writes to it for the whole run
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {header} =====\n".encode())
    log.flush()
    return log
