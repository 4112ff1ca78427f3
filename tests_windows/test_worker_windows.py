"""grid-worker on Windows: the default trainer runs inside runner.py, stopped through a pipe.

The fake mlagents (tests/support/fake_mlagents) stands in for ML-Agents: the worker finds `mlagents`
importable and starts every run through the runner, as it would with the real package. On
Linux the same tests run with GRID_RUNNER=1 (the runner on any platform).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import runner_support as support

from .wine import started

BEHAVIOR = "3DBall"
GENEROUS_S = 60  # a wait that ends early unless the behaviour under test is missing


def ledger(results: Path, run_id: str) -> list[dict[str, Any]]:
    path = results / run_id / "ledger.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def starts(results: Path, run_id: str) -> list[dict[str, Any]]:
    return [e for e in ledger(results, run_id) if e["event"] == "start"]


class WindowsSweep:
    """A sweep in folders whose paths have spaces, driven by `python -m mlagents_grid`."""

    def __init__(self, root: Path, runs: int, trainer_args: list[str]) -> None:
        self.root = root
        self.queue = root / "my queue"
        self.results = root / "my results"
        config = root / "grid config.yaml"
        values = ", ".join(str(i) for i in range(runs))
        config.write_text(
            f"behaviors:\n  {BEHAVIOR}:\n    trainer_type: ppo\n"
            f"environment_parameters:\n  index:\n    opt_values: [{values}]\n"
        )
        done = self.tool(
            "grid-plan", str(config), "--queue", str(self.queue), "--results-dir",
            str(self.results), "--run-id", "grid", *trainer_args,
        ).communicate(timeout=support.START_TIMEOUT)  # fmt: skip
        self.processes: list[subprocess.Popen[bytes]] = []
        assert (self.queue / "sweep.json").exists(), done

    def tool(self, name: str, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
        env = support.child_env()
        env["GRID_RUNNER"] = "1"
        env.pop("GRID_TRAINER", None)
        return started(
            lambda: subprocess.Popen(
                [sys.executable, "-m", "mlagents_grid", name, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                **popen,
            )
        )

    def worker(self, *args: str, grace: float = 20, **popen: Any) -> subprocess.Popen[bytes]:
        proc = self.tool(
            "grid-worker", "--queue", str(self.queue), "--grace", f"{grace:g}", *args, **popen
        )
        self.processes.append(proc)
        return proc

    def events(self) -> list[dict[str, Any]]:
        lines = (self.queue / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    def state(self, run_id: str) -> dict[str, Any]:
        """The run's newest state, whatever generation wrote it (pending when none did)."""
        from mlagents_grid.queue.folder import Queue

        return dict(vars(Queue(self.queue).state_of(run_id)))

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=60)


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[WindowsSweep]]:
    sweeps: list[WindowsSweep] = []
    yield sweeps
    for sweep in sweeps:
        sweep.stop_all()


def test_two_workers_train_every_run_exactly_once(made: list[WindowsSweep], tmp_path: Path) -> None:
    sweep = WindowsSweep(tmp_path, 4, ["--steps", "5", "--step-delay", "0.02"])
    made.append(sweep)
    workers = [sweep.worker(), sweep.worker()]
    for worker in workers:
        output = worker.communicate(timeout=300)[0].decode(errors="replace")
        assert worker.returncode == 0, output
    for index in range(4):
        run_id = f"grid-{index}"
        assert sweep.state(run_id)["status"] == "done", run_id
        assert len(starts(sweep.results, run_id)) == 1, run_id
        saved = sweep.results / run_id / BEHAVIOR / "checkpoint.pt"
        assert json.loads(saved.read_text())["step"] == 5


def test_a_kill_file_stops_a_run_and_its_model_is_saved(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    sweep = WindowsSweep(tmp_path, 1, ["--step-delay", "0.05"])
    made.append(sweep)
    worker = sweep.worker()
    step = sweep.results / "grid-0" / "step"
    support.wait_until(step.exists, support.START_TIMEOUT, "training")
    stop = sweep.tool("grid-stop", "--queue", str(sweep.queue), "grid-0", "--reason", "enough")
    stop.communicate(timeout=support.START_TIMEOUT)
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    state = sweep.state("grid-0")
    assert (state["status"], state["stop_reason"], state["exit_code"]) == ("stopped", "enough", 0)
    exits = [e for e in ledger(sweep.results, "grid-0") if e["event"] == "exit"]
    assert [e["reason"] for e in exits] == ["interrupt"]
    assert (sweep.results / "grid-0" / BEHAVIOR / "checkpoint.pt").exists()
    assert (sweep.results / "grid-0" / "interrupts.txt").read_text() == "1"


def test_a_terminated_worker_leaves_its_trainer_to_save_once_and_the_run_resumes(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    sweep = WindowsSweep(tmp_path, 1, ["--steps", "400", "--step-delay", "0.05"])
    made.append(sweep)
    first = sweep.worker()
    step = sweep.results / "grid-0" / "step"
    support.wait_until(
        lambda: step.exists() and int(step.read_text() or 0) >= 3,
        support.START_TIMEOUT,
        "training",
    )
    trainer = psutil.Process(starts(sweep.results, "grid-0")[0]["pid"])
    first.kill()  # TerminateProcess on Windows: no handler runs, the pipe to the runner breaks
    first.communicate(timeout=60)
    # Started while the first trainer may still be saving: it must wait for it, then resume.
    second = sweep.worker("--wait")
    psutil.wait_procs([trainer], timeout=support.START_TIMEOUT)
    output = second.communicate(timeout=300)[0].decode(errors="replace")
    assert second.returncode == 0, output
    events = ledger(sweep.results, "grid-0")
    first_exit = next(e for e in events if e["event"] == "exit")
    assert first_exit["reason"] == "interrupt"
    later = [e for e in events if e["event"] == "start"][1:]
    assert len(later) == 1 and later[0]["resume"] is True
    assert later[0]["step"] == first_exit["step"] > 0
    assert later[0]["time"] >= first_exit["time"]
    assert (sweep.results / "grid-0" / "interrupts.txt").read_text() == "1"
    assert sweep.state("grid-0")["status"] == "done"


def test_tensorboard_run_names_use_a_slash_on_every_platform() -> None:
    """The original built `run\\Behavior` on Windows, so its stop conditions never matched."""
    from mlagents_grid.results.metrics import tensorboard_run

    assert tensorboard_run("grid-4", "Soccer?team=0") == "grid-4/Soccer"


def test_readers_holding_state_files_open_never_stop_a_sweep(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    """As `grid-status --watch`, an editor or a virus scanner does: threads keep opening every
    state/ and final/ file with Python's open(), which does not share delete access, so each
    replace or removal of an open file meets a sharing violation (WinError 5 or 32)."""
    runs = 12
    sweep = WindowsSweep(tmp_path, runs, ["--steps", "5", "--step-delay", "0.02"])
    made.append(sweep)
    done = threading.Event()
    opened = [0]

    def read_every_file() -> None:
        while not done.is_set():
            for folder in ("state", "final"):
                for path in (sweep.queue / folder).glob("*.json"):
                    with contextlib.suppress(OSError), open(path, "rb") as held:
                        held.read()
                        opened[0] += 1
                        time.sleep(0.002)  # held a moment, as a slower reader does

    readers = [threading.Thread(target=read_every_file, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        workers = [sweep.worker(), sweep.worker()]
        outputs = [w.communicate(timeout=600)[0].decode(errors="replace") for w in workers]
    finally:
        done.set()
        for reader in readers:
            reader.join(timeout=30)
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output
    assert opened[0] > runs  # the readers did hold the files
    for index in range(runs):
        run_id = f"grid-{index}"
        assert sweep.state(run_id)["status"] == "done", run_id
        assert len(starts(sweep.results, run_id)) == 1, run_id
    failures = [e for e in sweep.events() if e["event"] in ("attempt-failed", "failed")]
    assert failures == []
    assert not list(sweep.queue.glob("*/*.unreadable"))


def test_the_runner_ends_an_ignored_stop_itself_before_the_worker_backstop(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    """The runner's own sequence (grace, then KILL_AFTER) ends a trainer that ignores every
    stop, with its exit code; the worker's TerminateProcess would come only later."""
    from mlagents_grid.run import runner

    sweep = WindowsSweep(tmp_path, 1, ["--ignore-exit", "--spawn-child", "--step-delay", "0.05"])
    made.append(sweep)
    worker = sweep.worker(grace=1)
    out = sweep.results / "grid-0"
    support.wait_until((out / "child.pid").exists, support.START_TIMEOUT, "training")
    child = int((out / "child.pid").read_text())
    stop = sweep.tool("grid-stop", "--queue", str(sweep.queue), "grid-0", "--reason", "enough")
    stop.communicate(timeout=support.START_TIMEOUT)
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    state = sweep.state("grid-0")
    assert (state["status"], state["exit_code"]) == ("stopped", runner.EXIT_KILLED), output
    log = (sweep.queue / "logs" / "grid-0.log").read_text(errors="replace")
    assert "runner: trainer still alive" in log
    support.wait_until(lambda: not support.alive(child), 30, "the trainer's child to be gone")


def test_a_signal_wakes_a_waiting_worker_at_once(tmp_path: Path) -> None:
    """Winsock's select() is not interrupted by a signal: without the wake-up, a worker
    waiting for work would see its Ctrl-C only when its wait times out."""
    script = textwrap.dedent(
        """\
        import signal, sys, threading, time
        from mlagents_grid.wakeup import Wakeup
        from mlagents_grid.wakeup import catch_stop_signals
        wake, caught = Wakeup(), []
        catch_stop_signals(lambda signum, _frame: caught.append(signum), wake)
        threading.Timer(0.5, signal.raise_signal, [signal.SIGINT]).start()
        woken = wake.wait(float(sys.argv[1]))
        time.sleep(0.1)  # the handler runs at the main thread's next bytecode
        print(woken, caught == [signal.SIGINT], flush=True)
        """
    )
    done = started(
        lambda: subprocess.run(
            [sys.executable, "-c", script, str(GENEROUS_S)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GENEROUS_S + support.START_TIMEOUT,
            env=support.child_env(),
            cwd=tmp_path,
        )
    )
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr


def test_appends_of_four_workers_to_events_jsonl_are_all_there(tmp_path: Path) -> None:
    """The C runtime appends as seek-then-write, where two processes can write at one offset."""
    per_worker = 400
    go = tmp_path / "go"
    script = textwrap.dedent(
        """\
        import os, sys, time
        from pathlib import Path
        from mlagents_grid.queue.folder import Queue
        queue, name, go = Queue(Path(sys.argv[1])), sys.argv[2], sys.argv[4]
        count = int(sys.argv[3])
        while not os.path.exists(go):
            time.sleep(0.01)
        for n in range(count):
            queue.record("appended", name, n=n, padding="x" * (n % 50))
        """
    )
    argvs = [
        [sys.executable, "-c", script, str(tmp_path), f"w{i}", str(per_worker), str(go)]
        for i in range(4)
    ]
    writers = [
        started(
            lambda argv=argv: subprocess.Popen(  # type: ignore[misc]
                argv, stdin=subprocess.DEVNULL, env=support.child_env()
            )
        )
        for argv in argvs
    ]
    try:
        time.sleep(1.0)  # all four started, waiting for the go
        go.write_text("")
        for writer in writers:
            assert writer.wait(timeout=GENEROUS_S) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    lines = (tmp_path / "events.jsonl").read_bytes().decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line whole
    assert len(entries) == 4 * per_worker
    assert {(e["run_id"], e["n"]) for e in entries} == {
        (f"w{i}", n) for i in range(4) for n in range(per_worker)
    }
