"""The runner's scenarios against the fake mlagents: run on Linux (tests/test_runner.py) and
inside Windows CPython (tests_windows/), so both tiers check the same behaviour."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from mlagents_grid.run import runner

from .bounds import EXIT_S, REAP_S, STATE_S

ROOT = Path(__file__).resolve().parent.parent.parent
FAKE_MLAGENTS = Path(__file__).resolve().parent / "fake_mlagents"
RUN_ID = "fake-0"
# Wine starts a python.exe in about a second, and a busy CI machine is slower still.
START_TIMEOUT = 60.0
# The escalation runs on its own clock (grace, then KILL_AFTER); this generous margin is for
# scheduling only: reading the stop line, signalling, reaping (well under 1 s when quiet).
ESCALATION_MARGIN_S = 20


def child_env() -> dict[str, str]:
    """The environment of a runner: the fake mlagents and this checkout importable."""
    env = dict(os.environ)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE_MLAGENTS), str(ROOT), *inherited])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Runner:
    """One `python -m mlagents_grid.run.runner` with the fake trainer, its std streams pipes."""

    def __init__(
        self,
        results: Path,
        grace: float = 30.0,
        trainer_args: Sequence[str] = (),
        run_id: str = RUN_ID,
    ) -> None:
        self.out = results / run_id
        argv = [sys.executable, "-m", "mlagents_grid.run.runner", "--grace", str(grace)]
        argv += ["--title", f"runner {run_id}", "--"]
        argv += ["config.yaml", "--run-id", run_id, "--results-dir", str(results)]
        self.process = subprocess.Popen(
            [*argv, *trainer_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        self.output = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_training(self) -> None:
        """Until the fake is in its training loop: an earlier stop would hit the imports."""
        wait_until(
            lambda: (self.out / "step").exists() or self.process.poll() is not None,
            START_TIMEOUT,
            "the fake trainer to start",
        )
        assert self.process.poll() is None, self.finish(5)

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()

    def finish(self, timeout: float) -> str:
        """Close stdin, wait for the exit, and return everything it printed."""
        stdout, _ = self.process.communicate(timeout=timeout)
        self.output = stdout.decode(errors="replace")
        return self.output

    def read(self, name: str) -> str:
        return (self.out / name).read_text()

    def end(self) -> None:
        """Kill what is left of this runner and of the fake's child, by pid."""
        pids = [self.pid]
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(self.read("child.pid")))
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.communicate(timeout=REAP_S)


class Runners:
    """Every runner a test starts, ended by pid when the test is over."""

    def __init__(self) -> None:
        self.started: list[Runner] = []

    def start(self, *args: object, **kwargs: object) -> Runner:
        started = Runner(*args, **kwargs)  # type: ignore[arg-type]
        self.started.append(started)
        return started

    def end_all(self) -> None:
        for started in self.started:
            started.end()


# -- scenarios ----------------------------------------------------------------------------
def stop_line_saves_once(runners: Runners, results: Path) -> None:
    """A `stop` line is Ctrl-C for the trainer: saved, exit 0; a second one is ignored."""
    trainer = runners.start(results)
    trainer.wait_training()
    trainer.send(b"stop\n")
    wait_until(lambda: (trainer.out / "checkpoint.txt").exists(), STATE_S, "the checkpoint")
    trainer.send(b"stop\n")
    output = trainer.finish(EXIT_S)
    assert trainer.process.returncode == 0, output
    assert "Learning was interrupted" in output
    assert int(trainer.read("checkpoint.txt")) >= 1
    assert trainer.read("interrupts.txt") == "1"


def eof_is_a_stop(runners: Runners, results: Path) -> None:
    """The worker died: end of file on stdin stops the trainer as a `stop` line does."""
    trainer = runners.start(results)
    trainer.wait_training()
    output = trainer.finish(EXIT_S)
    assert trainer.process.returncode == 0, output
    assert "Learning was interrupted" in output
    assert trainer.read("interrupts.txt") == "1"


def ignored_stop_escalates(runners: Runners, results: Path, ignore: str) -> None:
    """A trainer that ignores the interrupt (`ignore`: which trainer option) is ended,
    with the process it started, within grace + KILL_AFTER."""
    grace = 1.0
    trainer = runners.start(results, grace=grace, trainer_args=["--spawn-child", ignore])
    trainer.wait_training()
    child = int(trainer.read("child.pid"))
    assert alive(child)
    started = time.monotonic()
    trainer.send(b"stop\n")
    output = trainer.finish(grace + runner.KILL_AFTER + EXIT_S)
    took = time.monotonic() - started
    expected = runner.EXIT_KILLED if ignore == "--ignore-exit" else runner.EXIT_TERMINATED
    assert trainer.process.returncode == expected, output
    assert "ignoring KeyboardInterrupt" in output
    wait_until(lambda: not alive(child), REAP_S, f"the fake's child {child} to be gone")
    assert not alive(trainer.pid)
    assert took < grace + runner.KILL_AFTER + ESCALATION_MARGIN_S, took


def completion_exit_code(runners: Runners, results: Path, code: int) -> None:
    """A trainer that finishes: the runner's exit code is the trainer's."""
    trainer = runners.start(results, trainer_args=["--steps", "3", "--exit-code", str(code)])
    trainer.process.wait(START_TIMEOUT)  # stdin still open: its end would be a stop request
    output = trainer.finish(EXIT_S)
    assert trainer.process.returncode == code, output
    assert trainer.read("checkpoint.txt") == "3"
    assert not (trainer.out / "interrupts.txt").exists()


def blocked_wait_gets_its_stop(runners: Runners, results: Path, block: str) -> None:
    """A trainer whose main thread waits (`block`: "--block", a long sleep, or "--block-recv",
    multiprocessing's Connection.recv() as mlagents-learn waits for Unity) is interrupted at
    once and saves once; without the wake-up it would wait 600 s, or for good."""
    trainer = runners.start(results, trainer_args=[block])
    trainer.wait_training()
    trainer.send(b"stop\n")
    output = trainer.finish(START_TIMEOUT)
    assert trainer.process.returncode == 0, output
    assert "Learning was interrupted" in output
    assert trainer.read("interrupts.txt") == "1"
    assert trainer.read("checkpoint.txt") == "1"
