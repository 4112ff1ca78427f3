"""Runs mlagents-learn in this process and turns a stop request into its Ctrl-C, once.

Why: on Windows a worker can only stop a trainer with a console control event, which
mlagents-learn has no handler for (it dies without saving its model) and which never arrives
under Wine. Here the trainer runs in-process, and a stop request becomes one
KeyboardInterrupt in the main thread, where mlagents-learn catches it and saves its model as
on Ctrl-C.

    python -m mlagents_grid.run.runner --grace SECONDS [--title TEXT] \\
        -- MLAGENTS_LEARN_ARGS...

Stop requests come from the worker (a line `stop` on the stdin pipe it must give, or the end
of that pipe: the worker died) or from the runner's own console (`grid-worker --console`):
Ctrl+C, Ctrl+Break, or closing the window. The first one interrupts the trainer; every later
one is ignored, so that nothing cuts the save short. After a stop from its console the runner
exits with STATUS_CONTROL_C_EXIT (Windows; POSIX: it ends itself with SIGINT), which the
worker records as `interrupted`. If the trainer is still alive `--grace` seconds after the
stop, the runner terminates every descendant and exits with EXIT_TERMINATED; KILL_AFTER
seconds after that it kills them and leaves at once with EXIT_KILLED. Otherwise its exit code
is the trainer's.

The interrupt is a real SIGINT to the main thread, through the path a Ctrl-C takes (on
Windows that also sets the event every blocking wait of the main thread watches), and it is
issued again until the main thread has taken it: a SIGINT that lands just before Python
resets that event, as mlagents-learn waits for Unity in `Connection.recv()`, wakes nothing.
Where the interrupt is raised inside `Connection.recv()` at the moment its read completes,
multiprocessing returns the data from a `finally` block and the KeyboardInterrupt is lost;
the runner sees that frame return and interrupts again.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from types import CodeType, FrameType
from typing import Any, NoReturn

import psutil

from ..queue.job import Name
from ..queue.outcome import STATUS_CONTROL_C_EXIT
from .trainer import TERM_GRACE, Step, StopSequence, descendants

KILL_AFTER = TERM_GRACE  # seconds from the terminate step to the kill step
EXIT_INTERRUPTED = 130  # the trainer was interrupted before mlagents-learn could catch it
EXIT_TERMINATED = 143  # as a shell reports SIGTERM
EXIT_KILLED = 137  # as a shell reports SIGKILL
STOP_LINE = "stop"
# How often an interrupt the main thread has not taken yet is issued again.
REISSUE_EVERY = 0.2
# Windows console events that end the process once the handler returns: closing the window,
# logging off, shutting down. The system kills the process 5 s after a close whatever the
# handler does; this bound only matters where it waits longer (logoff, shutdown).
CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT = 2, 5, 6
CLOSE_EVENTS = frozenset({CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT})
CLOSE_WAIT = 20.0


class StopFrom(Name):
    """Where the runner's one stop request came from."""

    WORKER = "worker"  # a `stop` line on the pipe, or its end
    CONSOLE = "console"  # the runner's own console: Ctrl+C, Ctrl+Break, closing it


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


def interrupt_main_thread() -> None:
    """A real SIGINT for the main thread, taking the path a Ctrl-C takes.

    Windows: raise() runs Python's C-level handler in this thread, which flags the signal and
    sets the event that the main thread's blocking waits watch (`_thread.interrupt_main`
    would only set the flag). POSIX: the signal goes to the main thread itself, so that its
    blocking call returns EINTR and the handler runs.
    """
    if sys.platform == "win32":
        signal.raise_signal(signal.SIGINT)
        return
    main = threading.main_thread().ident
    if main is not None:
        signal.pthread_kill(main, signal.SIGINT)


def known_swallowers() -> frozenset[CodeType]:
    """Functions known to swallow an exception raised in them (a `finally: return`).

    Windows' `PipeConnection._recv_bytes` returns the data it read from its `finally` block:
    an interrupt raised there as the read completes is lost.
    """
    import multiprocessing.connection

    pipe = getattr(multiprocessing.connection, "PipeConnection", None)
    return frozenset() if pipe is None else frozenset({pipe._recv_bytes.__code__})


class Guard:
    """Stop requests from the worker's pipe and from the console: interrupts the trainer
    once, makes sure the main thread took that interrupt, then escalates.

    The pipe is read in a daemon thread, from the raw file descriptor and not sys.stdin: a
    daemon thread blocked inside sys.stdin's buffered reader can abort the interpreter at
    exit. `on_signal` is the main thread's SIGINT and SIGBREAK handler.
    """

    def __init__(
        self,
        grace: float,
        fd: int = 0,
        interrupt: Callable[[], None] = interrupt_main_thread,
        kill_after: float = KILL_AFTER,
        swallowers: Collection[CodeType] | None = None,
    ) -> None:
        self.grace = grace
        self.fd = fd
        self.kill_after = kill_after
        self.swallowers = known_swallowers() if swallowers is None else swallowers
        self._interrupt = interrupt
        self._stops = itertools.count()  # next() is atomic: the first stop request wins
        self.stop_requested_at: float | None = None
        self.source: StopFrom | None = None
        self.interrupts = 0  # interrupts issued to the main thread
        self.delivered = False  # the main thread raised the stop's KeyboardInterrupt
        self._lost = threading.Event()  # a delivered interrupt was swallowed: issue it again
        self.finished = threading.Event()  # the trainer returned (see on_console_close)
        self.exit_code: int | None = None
        self.known: dict[int, psutil.Process] = {}
        self.thread = threading.Thread(target=self._read, name="runner-guard", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request_stop(self, source: StopFrom = StopFrom.WORKER) -> bool:
        """Start the one stop: the interrupt and the escalation. True if this call did it."""
        if next(self._stops):
            return False
        self.stop_requested_at = time.monotonic()
        self.source = source
        self.remember_descendants()
        threading.Thread(target=self._escalate, name="runner-escalation", daemon=True).start()
        return True

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT or SIGBREAK in the main thread: ours (issued by `_escalate`) or a console's
        Ctrl+C, Ctrl+Break or close, which is a stop request of its own. Raises the stop's one
        KeyboardInterrupt; ignored once that is raised, so a second Ctrl+C never cuts the
        save short."""
        if self.delivered:
            return
        self.delivered = True
        self.request_stop(StopFrom.CONSOLE)  # nothing new when the worker's stop came first
        self._watch(frame)
        raise KeyboardInterrupt

    def on_console_close(self, ctrl_type: int) -> bool:
        """Windows' console control handler: closing the window (or logoff, shutdown) is a stop.

        Windows ends the process as soon as this returns, so for those it waits until the
        trainer has returned (its model saved) and ends the process itself, with the runner's
        exit code. Ctrl+C and Ctrl+Break go on (False) to the C runtime's handler, which makes
        them SIGINT and SIGBREAK.
        """
        if ctrl_type not in CLOSE_EVENTS:
            return False
        self.request_stop(StopFrom.CONSOLE)
        self.finished.wait(CLOSE_WAIT)
        _leave(STATUS_CONTROL_C_EXIT if self.exit_code is None else self.exit_code)

    def _watch(self, frame: FrameType | None) -> None:
        """Raised inside a function that may swallow it: see whether that frame returns data
        (swallowed: the interrupt is issued again) or passes the interrupt on."""
        while frame is not None and frame.f_code not in self.swallowers:
            frame = frame.f_back
        if frame is None:
            return
        watched = frame

        def profile(seen: FrameType, event: str, arg: Any) -> None:
            if seen is watched and event == "return":
                sys.setprofile(None)
                if arg is not None:
                    self.delivered = False
                    self._lost.set()

        sys.setprofile(profile)

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

    def _read(self) -> None:
        self.wait_for_stop()
        self.request_stop(StopFrom.WORKER)

    def _escalate(self) -> None:
        """Issue the interrupt until the main thread takes it; then the one stop sequence
        (trainer.py), whose first step the interrupt was."""
        assert self.stop_requested_at is not None
        sequence = StopSequence(max(0.0, self.grace), term_grace=max(0.0, self.kill_after))
        sequence.ask(self.stop_requested_at)
        while (deadline := sequence.deadline()) is not None:
            if not self.delivered:
                self.interrupts += 1
                self._interrupt()
                deadline = min(deadline, time.monotonic() + REISSUE_EVERY)
            self._lost.wait(max(0.0, deadline - time.monotonic()))
            self._lost.clear()
            step = sequence.due(time.monotonic())
            if step is Step.TERMINATE:
                self.terminate()
            elif step is Step.KILL:
                self.kill()

    def remember_descendants(self) -> list[psutil.Process]:
        """Every descendant now, added to those seen before (an orphan is no longer found)."""
        for child in descendants():
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
        _leave(EXIT_KILLED)


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


def _leave(code: int) -> NoReturn:
    """Exit now with `code`, from any thread, with what was printed flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def leave_as_stopped() -> NoReturn:
    """Exit as a process that a stop from outside ended, so the worker records `interrupted`:
    STATUS_CONTROL_C_EXIT on Windows, death by SIGINT elsewhere."""
    if sys.platform == "win32":
        _leave(STATUS_CONTROL_C_EXIT)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    _leave(128 + signal.SIGINT)  # not reached: SIGINT at its default ends the process


def set_console_title(title: str) -> None:
    """The trainer's console shows which run it is (Windows only)."""
    if sys.platform == "win32":
        with contextlib.suppress(Exception):
            ctypes.windll.kernel32.SetConsoleTitleW(title)  # type: ignore[attr-defined]


def catch_stops(guard: Guard) -> None:
    """Route every stop this process can receive to `guard`.

    SIGINT (the interrupts the guard issues, and a console's Ctrl+C) and SIGBREAK (Ctrl+Break)
    go to `guard.on_signal`: installed even when the runner was started with SIGINT ignored
    (a worker run with `nohup` or `&`), where Python would install no handler by itself.
    On Windows, Ctrl+C is enabled again (a parent may have started us with it disabled), and
    a console control handler turns closing the window into a stop with a save.
    """
    signal.signal(signal.SIGINT, guard.on_signal)
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, guard.on_signal)
    if sys.platform != "win32":
        return
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.SetConsoleCtrlHandler(None, False)
    routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)(guard.on_console_close)
    kernel32.SetConsoleCtrlHandler(routine, True)
    _held.append(routine)


def run_trainer(trainer_args: Sequence[str]) -> int:
    """mlagents-learn's own entry point, in this process; its exit code."""
    sys.argv = ["mlagents-learn", *trainer_args]
    try:
        from mlagents.trainers import learn

        learn.main()
    except SystemExit as exc:
        return exit_code(exc.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # stopped before mlagents-learn could catch it (while importing)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlagents_grid.run.runner",
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
    parser.add_argument("--title", metavar="TEXT", help="console title (Windows)")
    return parser


_held: list[Any] = []  # the console handler: referenced until the end


def main(argv: Sequence[str] | None = None) -> int:
    own, trainer_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(own)
    guard = Guard(args.grace)
    catch_stops(guard)
    if args.title:
        set_console_title(args.title)
    guard.start()
    code = run_trainer(trainer_args)
    stopped_here = guard.source is StopFrom.CONSOLE and code in (0, EXIT_INTERRUPTED)
    guard.exit_code = STATUS_CONTROL_C_EXIT if stopped_here else code
    guard.finished.set()
    if stopped_here:
        leave_as_stopped()
    return code


if __name__ == "__main__":
    sys.exit(main())
