"""grid-worker on Windows: the default trainer runs inside runner.py, stopped through a pipe.

The fake mlagents (tests/fake_mlagents) stands in for ML-Agents: the worker finds `mlagents`
importable and starts every run through the runner, as it would with the real package. On
Linux the same tests run with GRID_RUNNER=1 (the runner on any platform).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests import runner_support as support

BEHAVIOR = "3DBall"


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

    def tool(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = support.child_env()
        env["GRID_RUNNER"] = "1"
        env.pop("GRID_TRAINER", None)
        return subprocess.Popen(
            [sys.executable, "-m", "mlagents_grid", name, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
        )

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        proc = self.tool("grid-worker", "--queue", str(self.queue), "--grace", "20", *args)
        self.processes.append(proc)
        return proc

    def state(self, run_id: str) -> dict[str, Any]:
        for folder in ("final", "state"):
            path = self.queue / folder / f"{run_id}.json"
            if path.exists():
                return dict(json.loads(path.read_text()))
        return {"status": "pending"}

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
    from mlagents_grid.metrics import tensorboard_run

    assert tensorboard_run("grid-4", "Soccer?team=0") == "grid-4/Soccer"
