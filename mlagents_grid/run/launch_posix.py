"""POSIX: trainers start from a one-threaded child of the worker, which outlives it if it must.

When the worker dies (kill -9, OOM), its trainer must get exactly one SIGINT: mlagents-learn
saves its model on the first, and interrupted again while saving it aborts and can hang with
its run's lock held. A parent-death signal cannot promise that: Linux repeats it for every
thread of the dying parent the orphan passes through, and a worker has watcher threads. So
the worker forks this launcher before it starts any thread. The launcher starts every
trainer in a session of its own, renews its run's lease for as long as it lives (killing it
at once if the claim is lost: see ownership.py), reaps it, writes its exit record into the
queue, and carries out every stop (`Trainer`'s one sequence). When
the worker's end of their socket closes (the worker exited or died, by any means), the
launcher stops each trainer itself and lives on until they are gone. As a subreaper it also
adopts what trainers leave behind (Unity players), and ends them.
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
from typing import Any, NoReturn

from ..queue.outcome import StopBy
from .supervisor import Supervisor, TrainerHandle

PR_SET_CHILD_SUBREAPER = 36
REQUEST_SIZE = 1 << 20  # a trainer's command line and folder
REPLY_SIZE = 1 << 12  # a pid, an exit code or an error line
# How long orphaned trainers may finish on their own before they are stopped: a trainer that
# ends within it (one that was exiting as its worker died) is recorded as it ended.
ORPHAN_SETTLE = 0.5


def popen_options(_new_console: bool, _runner: bool) -> dict[str, Any]:
    """A session (and process group) of its own: the stop's SIGINT goes to the whole group."""
    return {"start_new_session": True}


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


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
        supervisor = Supervisor(popen_options)
        orphaned_at: float | None = None
        while orphaned_at is None or supervisor.trainers:
            watched = [wake_read] if orphaned_at is not None else [sock.fileno(), wake_read]
            ready, _, _ = select.select(watched, [], [], supervisor.timeout())
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            _reap(sock, supervisor)
            if orphaned_at is not None and time.monotonic() >= orphaned_at + ORPHAN_SETTLE:
                # The worker is gone: each trainer gets its one SIGINT and the usual escalation.
                supervisor.stop_all(StopBy.ORPHANED)
            supervisor.keep_leases()
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
            supervisor.stop(int(request["stop"]), StopBy(request["why"]))
        elif "kill" in request:
            supervisor.kill(int(request["kill"]), StopBy(request["why"]))
        else:
            trainer = supervisor.start(request, fds[0])
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
            trainer, left = ended
            _send(sock, {"exit": pid, "code": code, "left": left, "fenced": trainer.fenced})


class ForkLauncher:
    """The worker's side of the forked launcher: requests and replies over a socket pair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[int, TrainerHandle] = {}
        self._pending: list[Callable[[], None]] = []  # on_end of the start being answered
        self._replies: list[TrainerHandle | str] = []  # a started trainer, or an error
        self._reply = threading.Condition(self._lock)
        self.alive = True
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
        self, request: dict[str, Any], stdout: int, on_end: Callable[[], None]
    ) -> TrainerHandle:
        with self._reply:
            if not self.alive:
                raise OSError("the trainer launcher is gone")
            self._pending.append(on_end)
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], [stdout])
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

    def stop(self, pid: int, why: StopBy) -> None:
        self._ask({"stop": pid, "why": why})

    def kill(self, pid: int, why: StopBy) -> None:
        self._ask({"kill": pid, "why": why})

    def _ask(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._sock.send(json.dumps(message).encode())

    def _read(self) -> None:
        """Replies in request order; exit reports whenever a trainer ends."""
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
                fenced = message.get("fenced")
                handle.end(
                    int(message["code"]),
                    int(message.get("left", 0)),
                    fenced=None if fenced is None else str(fenced),
                )
        # The launcher died (killed from outside): its trainers' ends are the worker's to see.
        with self._reply:
            self.alive = False
            lost = list(self._handles.values())
            self._handles.clear()
            self._reply.notify_all()
        for handle in lost:
            handle.end(None, lost=True)

    def close(self) -> None:
        # shutdown, not only close: the reader thread's pending recv keeps the socket open.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
