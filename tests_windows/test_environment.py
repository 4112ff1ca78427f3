"""Is this Windows Python (and Wine) able to run the worker at all? Quick sanity checks of
what the worker relies on, so that a broken Wine or package shows up here, by name."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from filelock import FileLock, Timeout

from tests.support.runner_support import alive, wait_until

from .wine import started, wine_version

# Holds the lock named by argv[1], says so on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], thread_local=False)
lock.acquire(timeout=0)
print("held", flush=True)
time.sleep(600)
"""


def _python(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return started(
        lambda: subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[call-overload]
        )
    )


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill by pid (and reap), whatever state it is in."""
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=30)


@pytest.mark.skipif(sys.platform != "win32", reason="checks the Windows build itself")
def test_windows_python() -> None:
    """The Python that make test-windows meant to run (GRID_WINDOWS_PYTHON: 3.10 or 3.11)."""
    assert sys.platform == "win32"
    wanted = os.environ.get("GRID_WINDOWS_PYTHON")
    if wanted:
        assert f"{sys.version_info[0]}.{sys.version_info[1]}" == wanted
    assert sys.version_info[:2] in ((3, 10), (3, 11))
    print(f"Wine {wine_version()}" if wine_version() else "not under Wine")


def test_file_lock_contention_and_release_when_the_holder_dies(tmp_path: Path) -> None:
    lock_path = tmp_path / "claim.lock"
    holder = _python("-c", HOLDER, str(lock_path))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(Timeout):
            FileLock(lock_path, thread_local=False).acquire(timeout=0.2)
    finally:
        _end(holder)
    # The OS releases the lock of a process that died without releasing it.
    with FileLock(lock_path, thread_local=False).acquire(timeout=10):
        pass


def test_psutil_finds_and_kills_descendants() -> None:
    grandchild = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(600)']); time.sleep(600)"
    )
    child = _python("-c", grandchild)
    try:
        me = psutil.Process()
        wait_until(lambda: len(me.children(recursive=True)) >= 2, 60, "a child and a grandchild")
        tree = me.children(recursive=True)
        assert child.pid in [p.pid for p in me.children()]
        for process in tree:
            process.kill()
        gone, still = psutil.wait_procs(tree, timeout=30)
        assert not still
        for process in gone:
            assert not alive(process.pid)
    finally:
        _end(child)


def test_terminate_ends_a_process() -> None:
    child = _python("-c", "import time; time.sleep(600)")
    try:
        psutil.Process(child.pid).terminate()
        assert child.wait(timeout=30) != 0
    finally:
        _end(child)


def test_os_replace_over_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "state file.json"
    target.write_text("old")
    tmp = tmp_path / "state file.json.tmp"
    tmp.write_text("new")
    os.replace(tmp, target)
    assert target.read_text() == "new"
    assert not tmp.exists()


def test_watchdog_sees_a_new_file(tmp_path: Path) -> None:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    seen = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if str(event.src_path).endswith("kill"):
                seen.set()

    observer = Observer()
    observer.schedule(Handler(), str(tmp_path), recursive=True)
    observer.start()
    try:
        time.sleep(0.5)
        (tmp_path / "kill").write_text("stop")
        assert seen.wait(30), f"{type(observer).__name__} saw nothing"
    finally:
        observer.stop()
        observer.join(timeout=10)
