"""Trainers start from a one-threaded child of the worker, which interrupts each exactly once.

When the worker dies (kill -9, OOM), its trainers must get one SIGINT: mlagents-learn saves its
model on the first, and interrupted again while saving it aborts and can hang with its run's
lock held. A parent-death signal cannot promise that: Linux repeats it for every thread of the
dying parent the orphan passes through, and a worker has watcher threads. So the worker forks
this launcher before it starts any thread; the launcher starts every trainer in a session of
its own and, when the worker's end of their socket closes (the worker exited or died, by any
means), sends each trainer's group one SIGINT and exits. As a subreaper it also adopts what
trainers leave behind (Unity players), so the worker can still find and end them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

PR_SET_CHILD_SUBREAPER = 36
IS_WINDOWS = sys.platform == "win32"
REQUEST_SIZE = 1 << 20  # a trainer's command line and folder
REPLY_SIZE = 1 << 12  # a pid, an exit code or an error line

# Called with the trainer's exit code (negative: killed by that signal), or None when the
# launcher itself died and the code is lost.
ExitCallback = Callable[[int | None], None]


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _popen_options(new_console: bool) -> dict[str, Any]:
    """Popen options that start a trainer in a session (and process group) of its own."""
    if IS_WINDOWS:
        # As the original did: a console of its own per run, unless its output is echoed here.
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if new_console:
            flags |= getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def _spawn(request: dict[str, Any], stdout: int, inherit: int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(request["argv"]),
        cwd=request["cwd"],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        pass_fds=() if inherit is None or IS_WINDOWS else (inherit,),
        **_popen_options(bool(request["new_console"])),
    )


def _ignore(_signum: int, _frame: object) -> None:
    """Ctrl-C, SIGTERM and SLURM's warning are the worker's to act on, not the launcher's.

    A handler rather than SIG_IGN: exec resets handlers, but an ignored SIGINT would stay
    ignored in the trainer and make it impossible to stop gracefully.
    """


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def _serve(sock: socket.socket) -> NoReturn:
    """The launcher process: start trainers on request, report each exit, reap orphans."""
    try:
        _become_subreaper()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _ignore)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, _ignore)
        trainers: dict[int, subprocess.Popen[bytes]] = {}
        while True:
            ready, _, _ = select.select([sock.fileno(), wake_read], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            _reap(sock, trainers)
            if sock.fileno() not in ready:
                continue
            message, fds, _, _ = socket.recv_fds(sock, REQUEST_SIZE, 2)
            if not message:
                # The worker is gone: each trainer gets its one SIGINT, saves, and exits.
                for pid in trainers:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGINT)
                os._exit(0)
            try:
                request = json.loads(message)
                popen = _spawn(request, fds[0], fds[1] if len(fds) > 1 else None)
                trainers[popen.pid] = popen
                _send(sock, {"pid": popen.pid})
            except (OSError, ValueError, LookupError, subprocess.SubprocessError) as exc:
                _send(sock, {"error": str(exc)[:1000]})  # fits REPLY_SIZE
            finally:
                for fd in fds:
                    os.close(fd)
    except BaseException:
        os._exit(1)


def _reap(sock: socket.socket, trainers: dict[int, subprocess.Popen[bytes]]) -> None:
    """Collect every exited child; report the trainers' exit codes to the worker."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        popen = trainers.pop(pid, None)
        if popen is not None:  # else an orphan a trainer left, adopted and now reaped
            popen.returncode = os.waitstatus_to_exitcode(status)
            _send(sock, {"exit": pid, "code": popen.returncode})


class Launcher:
    """The worker's side: `start` a trainer, hear of its exit through a callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, ExitCallback] = {}
        self._next: list[ExitCallback] = []
        self._replies: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._sock: socket.socket | None = None
        self.pid = os.getpid()
        if IS_WINDOWS:
            return  # no fork: trainers are started in-process
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
        command: list[str],
        cwd: str,
        stdout: int,
        inherit_fd: int | None,
        new_console: bool,
        on_exit: ExitCallback,
    ) -> int:
        """Start `command` with `stdout` and `inherit_fd` open in it; returns its pid."""
        request = {"argv": command, "cwd": cwd, "new_console": new_console}
        if self._sock is None:
            popen = _spawn(request, stdout, inherit_fd)
            threading.Thread(target=lambda: on_exit(popen.wait()), daemon=True).start()
            return popen.pid
        fds = [stdout] if inherit_fd is None else [stdout, inherit_fd]
        with self._lock:
            self._next.append(on_exit)
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
            except OSError as exc:
                with contextlib.suppress(ValueError):
                    self._next.remove(on_exit)
                raise OSError(f"the trainer launcher is gone ({exc})") from None
            reply = self._replies.get()
        if "error" in reply:
            raise OSError(reply["error"])
        return int(reply["pid"])

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
            if "exit" in message:
                callback = self._callbacks.pop(int(message["exit"]), None)
                if callback is not None:
                    callback(int(message["code"]))
                continue
            on_exit = self._next.pop(0)
            if "pid" in message:
                self._callbacks[int(message["pid"])] = on_exit
            self._replies.put(message)
        # The launcher died: its trainers get their SIGINT from here; exit codes are lost.
        for pid, callback in [*self._callbacks.items()]:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGINT)
            callback(None)
        self._callbacks.clear()
        while self._next:
            self._next.pop(0)
            self._replies.put({"error": "the trainer launcher exited"})

    def close(self) -> None:
        """Let the launcher exit (it does anyway when the worker dies)."""
        if self._sock is not None:
            # shutdown, not only close: the reader thread's pending recv keeps the socket open.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
