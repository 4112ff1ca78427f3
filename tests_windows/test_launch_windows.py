"""The runner started as a Windows worker should start it: a console and process group of its
own, stdin a pipe, stdout and stderr into the run's log file. Then the worker asks it to stop,
or dies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil

from tests.support import runner_support as support

from .wine import started


def _own_console() -> dict[str, Any]:
    if sys.platform == "win32":
        return {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NEW_CONSOLE
        }
    return {"start_new_session": True}


def _runner_argv(results: Path) -> list[str]:
    return [
        sys.executable, "-m", "mlagents_grid.run.runner", "--grace", "30",
        "--title", f"grid {support.RUN_ID}", "--",
        "config.yaml", "--run-id", support.RUN_ID, "--results-dir", str(results),
    ]  # fmt: skip


def test_new_console_log_file_and_stop_line(results: Path) -> None:
    log_path = results / "trainer log.txt"
    out = results / support.RUN_ID
    with open(log_path, "wb") as log:
        runner = started(
            lambda: subprocess.Popen(
                _runner_argv(results),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=support.child_env(),
                **_own_console(),
            )
        )
    try:
        support.wait_until(lambda: (out / "step").exists(), support.START_TIMEOUT, "training")
        assert runner.stdin is not None
        runner.stdin.write(b"stop\n")
        runner.stdin.flush()
        assert runner.wait(timeout=60) == 0
        assert "Learning was interrupted" in log_path.read_text()
        assert (out / "checkpoint.txt").exists()
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.communicate(timeout=30)


# The "worker": starts the runner as above, says its pid, then dies without a word.
DYING_WORKER = textwrap.dedent(
    """\
    import json, subprocess, sys, os
    argv, env, options = json.loads(sys.argv[1])
    log = open(os.path.join(os.path.dirname(argv[-1]), "log.txt"), "wb")
    runner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                              env=env, **options)
    print(runner.pid, flush=True)
    sys.stdin.readline()
    os._exit(9)
    """
)


def test_runner_saves_when_its_worker_dies(results: Path) -> None:
    import json

    out = results / support.RUN_ID
    worker = started(lambda: subprocess.Popen(
        [sys.executable, "-c", DYING_WORKER,
         json.dumps([_runner_argv(results), support.child_env(), _own_console()])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ))  # fmt: skip
    runner_pid = 0
    try:
        assert worker.stdout is not None and worker.stdin is not None
        runner_pid = int(worker.stdout.readline())
        support.wait_until(lambda: (out / "step").exists(), support.START_TIMEOUT, "training")
        worker.stdin.write(b"die\n")
        worker.stdin.flush()
        assert worker.wait(timeout=30) == 9
        support.wait_until(lambda: not support.alive(runner_pid), 60, "the runner to stop")
        assert (out / "checkpoint.txt").exists()
        assert (out / "interrupts.txt").read_text() == "1"
    finally:
        for pid in (worker.pid, runner_pid):
            if pid and support.alive(pid):
                psutil.Process(pid).kill()
        worker.communicate(timeout=30)
