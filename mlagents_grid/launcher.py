"""Trainers start from a one-threaded child of the worker, which outlives it if it must.

When the worker dies (kill -9, OOM), its trainer must get exactly one SIGINT: mlagents-learn
saves its model on the first, and interrupted again while saving it aborts and can hang with
its run's lock held. A parent-death signal cannot promise that: Linux repeats it for every
thread of the dying parent the orphan passes through, and a worker has watcher threads. So
the worker forks this launcher before it starts any thread. The launcher starts every
trainer in a session of its own, reaps it, writes its exit record into the queue before
anyone may take the run over, and carries out every stop (`Trainer`'s one sequence). When
the worker's end of their socket closes (the worker exited or died, by any means), the
launcher stops each trainer itself and lives on until they are gone. As a subreaper it also
adopts what trainers leave behind (Unity players), and ends them.

On Windows there is no fork: the same supervisor runs in a thread of the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from .outcome import ORPHANED
from .output import say
from .trainer import IS_WINDOWS, KILL, TERMINATE, RunInfo, Trainer

PR_SET_CHILD_SUBREAPER = 36
REQUEST_SIZE = 1 << 20  # a trainer's command line and folder
REPLY_SIZE = 1 << 12  # a pid, an exit code or an error line
# How often the launcher notes a running trainer's descendants (found later as orphans).
REMEMBER_EVERY = 5.0
# How long orphaned trainers may finish on their own before they are stopped: a trainer that
# ends within it (one that was exiting as its worker died) is recorded as it ended.
ORPHAN_SETTLE = 0.5


@dataclass
class TrainerHandle:
    """The worker's view of a trainer it asked the launcher for."""

    pid: int
    on_end: Callable[[], None]
    returncode: int | None = None
    ended: bool = False
    lost: bool = False  # the launcher died: the exit code is unknown
    leftovers: int = 0

    def end(self, code: int | None, leftovers: int = 0, lost: bool = False) -> None:
        self.returncode, self.leftovers, self.lost = code, leftovers, lost
        self.ended = True
        self.on_end()


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _popen_options(new_console: bool) -> dict[str, Any]:
    """Popen options that start a trainer in a session (and process group) of its own."""
    if IS_WINDOWS:
        # --console: a console window of its own per run, as the original did.
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if new_console:
            flags |= getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


class Supervisor:
    """The trainers one worker started: start, stop, escalate, reap and record each."""

    def __init__(self) -> None:
        self.trainers: dict[int, Trainer] = {}
        self.wake_at: float | None = None  # one more time to wake at (see ORPHAN_SETTLE)

    def start(self, request: dict[str, Any], stdout: int, lock_fd: int | None) -> Trainer:
        popen = subprocess.Popen(
            list(request["argv"]),
            cwd=request["cwd"],
            # The runner's stdin is its stop channel (and its end is a stop): a pipe kept here.
            stdin=subprocess.PIPE if request.get("runner") else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            pass_fds=() if lock_fd is None or IS_WINDOWS else (lock_fd,),
            **_popen_options(bool(request["new_console"])),
        )
        run = RunInfo(str(request["run_id"]), int(request["attempt"]), request.get("exit_file"))
        trainer = Trainer(popen.pid, run, float(request["grace"]), lock_fd, popen)
        self.trainers[popen.pid] = trainer
        return trainer

    def stop(self, pid: int, why: str) -> None:
        trainer = self.trainers.get(pid)
        if trainer is not None:
            trainer.stop(why, time.monotonic())

    def kill(self, pid: int, why: str) -> None:
        trainer = self.trainers.get(pid)
        if trainer is not None:
            trainer.kill(why, time.monotonic())

    def stop_all(self, why: str) -> None:
        for pid in list(self.trainers):
            self.stop(pid, why)

    def tick(self) -> None:
        now = time.monotonic()
        for trainer in self.trainers.values():
            action = trainer.tick(now)
            if action == TERMINATE:
                say(
                    f"{trainer.run.run_id}: still running {trainer.sequence.grace:g}s after "
                    "SIGINT, SIGTERM sent"
                )
            elif action == KILL and trainer.sequence.terminated_at is not None:
                say(f"{trainer.run.run_id}: still running after SIGTERM, SIGKILL sent")

    def timeout(self) -> float:
        """Seconds until the next escalation or descendant check."""
        now = time.monotonic()
        deadlines = [d for t in self.trainers.values() if (d := t.deadline()) is not None]
        if self.wake_at is not None and self.wake_at > now:
            deadlines.append(self.wake_at)
        return max(0.0, min([now + REMEMBER_EVERY, *deadlines]) - now)

    def ended(self, pid: int, code: int | None, adopter: int) -> tuple[Trainer, int] | None:
        """Record a trainer's end (before anyone may take its run over) and end its leftovers."""
        trainer = self.trainers.pop(pid, None)
        if trainer is None:
            return None  # an orphan a trainer left, adopted and now reaped
        trainer.record_exit(code)
        left = trainer.clean_up(adopter)
        if left:
            say(f"{trainer.run.run_id}: ended {left} leftover process(es) of the trainer")
        return trainer, left


def _ignore(_signum: int, _frame: object) -> None:
    """Ctrl-C, SIGTERM and SLURM's warning are the worker's to act on, not the launcher's.

    A handler rather than SIG_IGN: exec resets handlers, but an ignored SIGINT would stay
    ignored in the trainer and make it impossible to stop gracefully.
    """


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def _serve(sock: socket.socket) -> NoReturn:
    """The launcher process: serve the worker, and outlive it until its trainers are gone."""
    try:
        _become_subreaper()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _ignore)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, _ignore)
        supervisor = Supervisor()
        orphaned_at: float | None = None
        while orphaned_at is None or supervisor.trainers:
            watched = [wake_read] if orphaned_at is not None else [sock.fileno(), wake_read]
            ready, _, _ = select.select(watched, [], [], supervisor.timeout())
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            _reap(sock, supervisor)
            if orphaned_at is not None and time.monotonic() >= orphaned_at + ORPHAN_SETTLE:
                # The worker is gone: each trainer gets its one SIGINT and the usual escalation.
                supervisor.stop_all(ORPHANED)
            supervisor.tick()
            if orphaned_at is None and sock.fileno() in ready and not _handle(sock, supervisor):
                orphaned_at = time.monotonic()
                supervisor.wake_at = orphaned_at + ORPHAN_SETTLE
        os._exit(0)
    except BaseException:
        os._exit(1)


def _handle(sock: socket.socket, supervisor: Supervisor) -> bool:
    """One message from the worker; False when the worker is gone."""
    try:
        message, fds, _, _ = socket.recv_fds(sock, REQUEST_SIZE, 2)
    except OSError:
        # ECONNRESET: the worker died with a reply of ours unread. Gone all the same; this
        # must not end the launcher, whose trainers still need their stop and exit records.
        return False
    if not message:
        return False
    try:
        request = json.loads(message)
        if "stop" in request:
            supervisor.stop(int(request["stop"]), str(request["why"]))
        elif "kill" in request:
            supervisor.kill(int(request["kill"]), str(request["why"]))
        else:
            lock_fd = fds.pop() if len(fds) > 1 else None
            try:
                trainer = supervisor.start(request, fds[0], lock_fd)
            except BaseException:
                if lock_fd is not None:
                    os.close(lock_fd)
                raise
            _send(sock, {"pid": trainer.pid})
    except (OSError, ValueError, LookupError, subprocess.SubprocessError) as exc:
        _send(sock, {"error": str(exc)[:1000]})  # fits REPLY_SIZE
    finally:
        for fd in fds:
            os.close(fd)
    return True


def _reap(sock: socket.socket, supervisor: Supervisor) -> None:
    """Collect every exited child; record and report the trainers among them."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        ended = supervisor.ended(pid, code, os.getpid())
        if ended is not None:
            _send(sock, {"exit": pid, "code": code, "left": ended[1]})


class Launcher:
    """The worker's side: `start` a trainer, `stop` or `kill` it, hear of its end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[int, TrainerHandle] = {}
        self._pending: list[Callable[[], None]] = []  # on_end of the start being answered
        self._replies: list[TrainerHandle | str] = []  # a started trainer, or an error
        self._reply = threading.Condition(self._lock)
        self._sock: socket.socket | None = None
        self.pid = os.getpid()
        self.alive = True
        self._local: Supervisor | None = None
        if IS_WINDOWS:
            self._local = Supervisor()  # no fork: supervised from a thread of the worker
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _serve(theirs)
        theirs.close()
        self.pid = pid
        self._sock = ours
        threading.Thread(target=self._read, daemon=True).start()

    def start(
        self,
        request: dict[str, Any],
        stdout: int,
        lock_fd: int | None,
        on_end: Callable[[], None],
    ) -> TrainerHandle:
        """Start a trainer (`request`: argv, cwd, new_console, grace, run_id, attempt,
        exit_file) with `stdout` and the run's lock open in it; OSError when it cannot start.
        """
        if self._local is not None:
            return self._start_local(request, stdout, lock_fd, on_end)
        assert self._sock is not None
        fds = [stdout] if lock_fd is None else [stdout, lock_fd]
        with self._reply:
            if not self.alive:
                raise OSError("the trainer launcher is gone")
            self._pending.append(on_end)
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
            except OSError as exc:
                self._pending.remove(on_end)
                raise OSError(f"the trainer launcher is gone ({exc})") from None
            while not self._replies and self.alive:
                self._reply.wait()
            if not self._replies:
                raise OSError("the trainer launcher exited")
            reply = self._replies.pop(0)
        if isinstance(reply, str):
            raise OSError(reply)
        return reply

    def stop(self, pid: int, why: str) -> None:
        self._ask({"stop": pid, "why": why})

    def kill(self, pid: int, why: str) -> None:
        self._ask({"kill": pid, "why": why})

    def _ask(self, message: dict[str, Any]) -> None:
        if self._local is not None:
            action = self._local.kill if "kill" in message else self._local.stop
            action(int(message.get("kill", message.get("stop", 0))), str(message["why"]))
            return
        assert self._sock is not None
        with contextlib.suppress(OSError):
            self._sock.send(json.dumps(message).encode())

    def _read(self) -> None:
        """Replies in request order; exit reports whenever a trainer ends."""
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(REPLY_SIZE)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._reply:
                if "exit" in message:
                    handle = self._handles.pop(int(message["exit"]), None)
                else:
                    # Registered here, before the next message: a trainer that exits at
                    # once is reported right after its pid, and must find its handle.
                    on_end = self._pending.pop(0)
                    if "pid" in message:
                        started = TrainerHandle(int(message["pid"]), on_end)
                        self._handles[started.pid] = started
                        self._replies.append(started)
                    else:
                        self._replies.append(str(message.get("error")))
                    self._reply.notify_all()
                    continue
            if handle is not None:
                handle.end(int(message["code"]), int(message.get("left", 0)))
        # The launcher died (killed from outside): its trainers' ends are the worker's to see.
        with self._reply:
            self.alive = False
            lost = list(self._handles.values())
            self._handles.clear()
            self._reply.notify_all()
        for handle in lost:
            handle.end(None, lost=True)

    # -- Windows: the supervisor in a thread -------------------------------------
    def _start_local(
        self,
        request: dict[str, Any],
        stdout: int,
        lock_fd: int | None,
        on_end: Callable[[], None],
    ) -> TrainerHandle:
        assert self._local is not None
        # The trainer's copy of the lock, closed once its exit is recorded (as the launcher's).
        own = os.dup(lock_fd) if lock_fd is not None else None
        trainer = self._local.start(request, stdout, own)
        handle = TrainerHandle(trainer.pid, on_end)

        def wait() -> None:
            assert trainer.popen is not None
            code = trainer.popen.wait()
            ended = self._local.ended(trainer.pid, code, os.getpid()) if self._local else None
            handle.end(code, ended[1] if ended else 0)

        def escalate() -> None:
            while not handle.ended:
                time.sleep(min(1.0, self._local.timeout() if self._local else 1.0))
                if self._local is not None:
                    self._local.tick()

        threading.Thread(target=wait, daemon=True).start()
        threading.Thread(target=escalate, daemon=True).start()
        return handle

    def close(self) -> None:
        """Let the launcher exit (it does anyway when the worker dies)."""
        if self._sock is not None:
            # shutdown, not only close: the reader thread's pending recv keeps the socket open.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
