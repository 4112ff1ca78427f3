"""Runs mlagents-learn in this process and turns a `stop` line on stdin into its Ctrl-C.

Why: on Windows a worker can only stop a trainer with a console control event, which
mlagents-learn has no handler for (it dies without saving its model) and which never arrives
under Wine. Here the trainer runs in-process, and a line on a pipe becomes KeyboardInterrupt
in the main thread, where mlagents-learn catches it and saves its model as on Ctrl-C.

    python -m mlagents_grid.runner --grace SECONDS [--hold LOCKFILE] [--title TEXT] \\
        -- MLAGENTS_LEARN_ARGS...

The worker must give it a stdin pipe: a line `stop` asks the trainer to stop, and so does end
of file (the worker died). If the trainer is still alive `--grace` seconds later, the runner
terminates every descendant and exits with EXIT_TERMINATED; KILL_AFTER seconds after that it
kills them and leaves at once with EXIT_KILLED. Otherwise its exit code is the trainer's.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import psutil
from filelock import FileLock, Timeout

from .trainer import KILL, TERM_GRACE, TERMINATE, StopSequence

KILL_AFTER = TERM_GRACE  # seconds from the terminate step to the kill step
EXIT_BUSY = 75  # --hold: another runner holds the lock (EX_TEMPFAIL)
EXIT_TERMINATED = 143  # as a shell reports SIGTERM
EXIT_KILLED = 137  # as a shell reports SIGKILL
STOP_LINE = "stop"


def split_lines(pending: bytes, data: bytes) -> tuple[list[str], bytes]:
    """Complete lines of `pending + data` (stripped) and the unfinished rest."""
    *lines, rest = (pending + data).split(b"\n")
    return [line.decode("utf-8", "replace").strip() for line in lines], rest


def exit_code(code: object) -> int:
    """The process exit code that `SystemExit(code)` gives, as the interpreter maps it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runner's own options, and the trainer's arguments after the first `--`."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


class Guard:
    """Reads stop requests from a pipe: interrupts the trainer once, then escalates.

    It runs in a daemon thread and reads the raw file descriptor, not sys.stdin: a daemon
    thread blocked inside sys.stdin's buffered reader can abort the interpreter at exit.
    """

    def __init__(
        self,
        grace: float,
        fd: int = 0,
        interrupt: Callable[[], None] = _thread.interrupt_main,
        kill_after: float = KILL_AFTER,
    ) -> None:
        self.grace = grace
        self.fd = fd
        self.kill_after = kill_after
        self._interrupt = interrupt
        self._lock = threading.Lock()
        self.stop_requested_at: float | None = None
        self.interrupts = 0
        self.known: dict[int, psutil.Process] = {}
        self.thread = threading.Thread(target=self._run, name="runner-guard", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> bool:
        """Interrupt the main thread, only the first time. True if this call did it."""
        with self._lock:
            if self.stop_requested_at is not None:
                return False
            self.stop_requested_at = time.monotonic()
            self.interrupts += 1
        self.remember_descendants()
        self._interrupt()
        wake_main_thread()
        return True

    def wait_for_stop(self) -> None:
        """Block until a `stop` line or end of file."""
        pending = b""
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                return
            lines, pending = split_lines(pending, data)
            if STOP_LINE in lines:
                return

    def _run(self) -> None:
        self.wait_for_stop()
        self.request_stop()
        assert self.stop_requested_at is not None
        # The one stop sequence (trainer.py); the interrupt above was its first step.
        sequence = StopSequence(max(0.0, self.grace), term_grace=max(0.0, self.kill_after))
        sequence.ask(self.stop_requested_at)
        while (deadline := sequence.deadline()) is not None:
            time.sleep(max(0.0, deadline - time.monotonic()))
            action = sequence.due(time.monotonic())
            if action == TERMINATE:
                self.terminate()
            elif action == KILL:
                self.kill()

    def remember_descendants(self) -> list[psutil.Process]:
        """Every descendant now, added to those seen before (an orphan is no longer found)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=True):
                self.known.setdefault(child.pid, child)
        return list(self.known.values())

    def terminate(self) -> None:
        """Terminate every descendant, then make the main thread exit with EXIT_TERMINATED."""
        for process in self.remember_descendants():
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _raise_in_main_thread(Terminated)

    def kill(self) -> None:
        """Kill every descendant and leave now: the trainer ignored every gentler way."""
        for process in self.remember_descendants():
            with contextlib.suppress(psutil.Error):
                process.kill()
        print(
            f"runner: trainer still alive {self.kill_after:g} s after terminate: killed",
            file=sys.stderr,
        )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_KILLED)


class Terminated(SystemExit):
    """Raised in the main thread by the terminate step: the runner exits with its code."""

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def _raise_in_main_thread(exc_type: type[BaseException]) -> None:
    """Raise exc_type in the main thread at its next bytecode (finally blocks still run)."""
    main_id = threading.main_thread().ident
    if main_id is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(main_id), ctypes.py_object(exc_type)
        )


def wake_main_thread() -> None:
    """Windows: end a wait of the main thread (sleep, pipe read) so it sees the interrupt.

    interrupt_main() only sets a flag, read when the main thread next runs bytecode; a real
    Ctrl-C also sets the event that Windows Python's blocking waits in the main thread watch.
    """
    if sys.platform == "win32":
        with contextlib.suppress(Exception):
            sigint_event = ctypes.pythonapi._PyOS_SigintEvent
            sigint_event.restype = ctypes.c_void_p
            ctypes.windll.kernel32.SetEvent(ctypes.c_void_p(sigint_event()))


def hold_lock(path: str) -> FileLock | None:
    """Take `path` without waiting and keep it for life; None if another process holds it."""
    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def set_console_title(title: str) -> None:
    """The trainer's console shows which run it is (Windows only)."""
    if sys.platform == "win32":
        with contextlib.suppress(Exception):
            ctypes.windll.kernel32.SetConsoleTitleW(title)  # type: ignore[attr-defined]


def run_trainer(trainer_args: Sequence[str]) -> int:
    """mlagents-learn's own entry point, in this process; its exit code."""
    sys.argv = ["mlagents-learn", *trainer_args]
    try:
        from mlagents.trainers import learn

        learn.main()
    except SystemExit as exc:
        return exit_code(exc.code)
    except KeyboardInterrupt:
        return 130  # stopped before mlagents-learn could catch it (e.g. while importing)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlagents_grid.runner",
        description="Run mlagents-learn in this process; a `stop` line on stdin (or end of "
        "file) is its Ctrl-C.",
    )
    parser.add_argument(
        "--grace",
        type=float,
        required=True,
        metavar="SECONDS",
        help="after a stop request, terminate the trainer this much later",
    )
    parser.add_argument(
        "--hold",
        metavar="LOCKFILE",
        help=f"hold this file lock for life; exit {EXIT_BUSY} if already held",
    )
    parser.add_argument("--title", metavar="TEXT", help="console title (Windows)")
    return parser


_held: list[Any] = []  # the --hold lock: referenced until the process ends


def main(argv: Sequence[str] | None = None) -> int:
    own, trainer_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(own)
    # Started with SIGINT ignored (a worker run with `nohup` or `&`), Python would install no
    # KeyboardInterrupt handler, and interrupt_main() would do nothing: the stop would be lost.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.hold:
        lock = hold_lock(args.hold)
        if lock is None:
            print(f"runner: {args.hold} is held by another trainer: not started", file=sys.stderr)
            return EXIT_BUSY
        _held.append(lock)
    if args.title:
        set_console_title(args.title)
    guard = Guard(args.grace)
    guard.start()
    return run_trainer(trainer_args)


if __name__ == "__main__":
    sys.exit(main())
