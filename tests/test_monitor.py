"""grid-monitor against a real TensorBoard server and against event files directly."""

from __future__ import annotations

import http.server
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from mlagents_grid.plan.conditions import StopCondition
from mlagents_grid.queue.job import Job
from mlagents_grid.queue.ownership import ClaimFolder
from mlagents_grid.results.metrics import MetricsUnavailable, TensorBoardClient
from mlagents_grid.results.monitor import Monitor, conditions_met

from .support.board import Board
from .support.bounds import ANSWER_S, EXIT_S, SWEEP_S
from .support.sweep import Sweep

LOW = '{tag: "Environment/Cumulative Reward", step: 3, min: 50}'


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Sweep | Board]]:
    things: list[Sweep | Board] = []
    yield things
    for thing in things:
        if isinstance(thing, Board):
            thing.stop()
        else:
            thing.stop_all()


def start_monitor(sweep: Sweep, mode: str, board: Board | None) -> subprocess.Popen[str]:
    if mode == "logdir":
        args = ["--logdir", str(sweep.root / "results"), "--interval", "5"]
    else:
        assert board is not None
        args = ["--tensorboard", board.url, "--interval", "1"]
    return sweep.start(sweep.command("grid-monitor", *args))


def setup(
    made: list[Sweep | Board], root: Path, mode: str, **kwargs: object
) -> tuple[Sweep, Board | None]:
    sweep = Sweep(root, **kwargs)  # type: ignore[arg-type]
    made.append(sweep)
    board = None
    if mode == "tensorboard":
        board = Board(root / "results")
        made.append(board)
        board.start()
    return sweep, board


@pytest.mark.parametrize("mode", ["logdir", "tensorboard"])
def test_runs_below_min_or_above_max_are_stopped_and_others_finish(
    made: list[Sweep | Board], tmp_path: Path, mode: str
) -> None:
    sweep, board = setup(
        made,
        tmp_path,
        mode,
        runs=3,
        ticks=300,
        stops={"3DBall": '{tag: "Environment/Cumulative Reward", step: 3, min: 50, max: 150}'},
        options={
            "default": {"step_delay": 0.05, "curve": {"*": [100]}},
            "runs": {
                "grid-0": {"curve": {"*": [100, 100, 12.5]}},
                "grid-1": {"curve": {"*": [100, 100, 100, 200]}},
                "grid-2": {"step_delay": 0.01},
            },
        },
    )
    workers = [sweep.start_worker() for _ in range(3)]
    monitor = start_monitor(sweep, mode, board)
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert monitor.wait(timeout=EXIT_S) == 0, sweep.output(monitor)
    report = {run["run_id"]: run for run in sweep.report()["runs"]}
    assert report["grid-0"]["status"] == "stopped"
    assert re.fullmatch(
        r"Environment/Cumulative Reward: 12\.5 < 50 \[step: \d+\]", report["grid-0"]["stop_reason"]
    )
    assert report["grid-1"]["status"] == "stopped"
    assert report["grid-1"]["stop_reason"].startswith("Environment/Cumulative Reward: 200 > 150")
    assert report["grid-2"]["status"] == "done"
    # Stopped gracefully: the trainer saved its model on SIGINT.
    assert {e["reason"] for e in sweep.exits("grid-0")} == {"sigint"}
    assert "12.5 < 50" in sweep.output(monitor)
    requested = [e["run_id"] for e in sweep.events("stop-requested")]
    assert sorted(requested) == ["grid-0", "grid-1"]


@pytest.mark.parametrize("mode", ["logdir", "tensorboard"])
def test_a_run_below_the_condition_step_is_not_stopped(
    made: list[Sweep | Board], tmp_path: Path, mode: str
) -> None:
    sweep, board = setup(
        made,
        tmp_path,
        mode,
        runs=1,
        ticks=30,
        stops={"3DBall": '{tag: "Environment/Cumulative Reward", step: 1000, min: 50}'},
        options={"default": {"step_delay": 0.1, "curve": {"*": [1]}}},
    )
    worker = sweep.start_worker()
    monitor = start_monitor(sweep, mode, board)
    assert worker.wait(timeout=SWEEP_S) == 0
    assert monitor.wait(timeout=EXIT_S) == 0
    assert sweep.statuses() == {"grid-0": "done"}
    assert not sweep.events("stop-requested")


@pytest.mark.parametrize("mode", ["logdir", "tensorboard"])
def test_two_behaviors_stop_when_one_condition_holds_and_defaults_apply_to_each(
    made: list[Sweep | Board], tmp_path: Path, mode: str
) -> None:
    sweep, board = setup(
        made,
        tmp_path,
        mode,
        runs=2,
        ticks=300,
        behaviors=("Goalie", "Striker"),
        extra=(
            "default_settings:\n"
            '  opt_stop: {tag: "Environment/Cumulative Reward", step: 2, min: 0}\n'
        ),
        stops={"Striker": '{tag: "Losses/Policy Loss", step: 2, max: 10}'},
        options={
            "default": {"step_delay": 0.05, "curve": {"*": [5]}},
            "runs": {"grid-1": {"curve": {"Goalie": [5], "Striker": [5, 5, -3]}}},
        },
    )
    worker = sweep.start_worker()
    monitor = start_monitor(sweep, mode, board)
    sweep.wait_for(lambda: sweep.starts("grid-1"))
    sweep.wait_for(lambda: sweep.statuses()["grid-1"] == "stopped")
    assert sweep.statuses()["grid-0"] in ("done", "running")
    run = sweep.report()["runs"][1]
    assert re.fullmatch(
        r"Striker: Environment/Cumulative Reward: -3 < 0 \[step: \d+\]", run["stop_reason"]
    )
    assert worker.wait(timeout=SWEEP_S) == 0
    assert monitor.wait(timeout=EXIT_S) == 0


def test_tensorboard_down_stops_nothing_and_the_monitor_recovers(
    made: list[Sweep | Board], tmp_path: Path
) -> None:
    sweep, board = setup(
        made,
        tmp_path,
        "tensorboard",
        runs=1,
        ticks=2000,
        stops={"3DBall": LOW},
        options={
            "default": {"step_delay": 0.02, "curve": {"*": [100, 100, 100] + [99] * 150 + [1]}}
        },
    )
    assert board is not None
    board.stop()
    worker = sweep.start_worker()
    monitor = start_monitor(sweep, "tensorboard", board)
    sweep.wait_for_training("grid-0")
    time.sleep(3)
    assert sweep.statuses() == {"grid-0": "running"}
    board.start()
    sweep.wait_for(lambda: sweep.statuses()["grid-0"] == "stopped")
    assert worker.wait(timeout=EXIT_S) == 0
    assert monitor.wait(timeout=EXIT_S) == 0
    output = sweep.output(monitor)
    assert output.count("metrics unavailable") == 1
    assert "metrics available again" in output
    assert sweep.report()["runs"][0]["stop_reason"].startswith(
        "Environment/Cumulative Reward: 1 < 50"
    )


class GarbageHandler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        # Unread request bytes make close() send a reset, which can cut our own answer short.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code, body = self.answers.pop(0) if self.answers else (200, b"[]")
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[tuple[str, type[GarbageHandler]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GarbageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", GarbageHandler
    server.shutdown()
    server.server_close()


def test_garbage_answers_never_stop_a_run_nor_crash(garbage_server) -> None:
    url, handler = garbage_server
    source = TensorBoardClient(url, timeout=ANSWER_S)
    runs = ["r-0/B", "r-1/B"]
    handler.answers = [(200, b"{not json")]
    with pytest.raises(MetricsUnavailable):
        source.fetch(runs, "T")
    handler.answers = [(500, b"oops")]
    with pytest.raises(MetricsUnavailable):
        source.fetch(runs, "T")
    nan_rows = {"r-0/B": [[1.0, 5, "NaN"], [1.0, 6, None]], "r-1/B": "x" * 10_000}
    handler.answers = [(200, json.dumps(nan_rows).encode())]
    assert source.fetch(runs, "T") == {"r-0/B": None, "r-1/B": None}
    handler.answers = [(200, json.dumps({"r-0/B": [[1.0, 5, float("nan")]]}).encode())]
    assert source.fetch(runs, "T") == {"r-0/B": None, "r-1/B": None}
    huge = {"r-0/B": [[1.0, i, 2.0] for i in range(50_000)] + [["a", "b", "c"]]}
    handler.answers = [(200, json.dumps(huge).encode())]
    latest = source.fetch(runs, "T")["r-0/B"]
    assert latest is not None and latest.step == 49_999
    # A server without multirun: the fallback asks run by run, and remembers.
    handler.answers = [(404, b""), (200, b"[[1.0, 7, 3.5]]"), (400, b"no such run")]
    found = source.fetch(runs, "T")
    assert found["r-0/B"] is not None and found["r-0/B"].value == 3.5
    assert found["r-1/B"] is None
    assert not source.multirun
    conditions = (StopCondition("B", "T", 0, 50.0),)
    job = Job("r-0", 0, {}, (), conditions)
    assert conditions_met([job], {("r-0/B", "T"): None}, False) == []


def test_monitor_keeps_polling_through_garbage(
    made: list[Sweep | Board], tmp_path: Path, garbage_server
) -> None:
    url, handler = garbage_server
    sweep = Sweep(
        tmp_path,
        runs=1,
        ticks=200,
        stops={"3DBall": LOW},
        options={"default": {"step_delay": 0.02, "curve": {"*": [1]}}},
    )
    made.append(sweep)
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-0")
    handler.answers = [(200, b"<html>"), (200, b'{"grid-0/3DBall": [[0, 10, "1"]]}')] * 3
    monitor = Monitor(sweep.queue, tensorboard=url, interval=0.1)
    for _ in range(6):
        assert monitor.check() == []
    handler.answers = [(200, b'{"grid-0/3DBall": [[0, 10, 1.0]]}')]
    met = monitor.check()
    assert [m.reason for m in met] == ["Environment/Cumulative Reward: 1 < 50 [step: 10]"]
    assert worker.wait(timeout=EXIT_S) == 0
    assert sweep.statuses() == {"grid-0": "stopped"}


def test_the_monitor_reads_a_job_again_once_grid_retry_rewrote_its_opt_stop(
    made: list[Sweep | Board], tmp_path: Path
) -> None:
    """A retried run takes the sweep's opt_stop (its job file is replaced): a monitor that
    read the job before, while the run was final, must not keep the old conditions."""
    import dataclasses

    from mlagents_grid.queue.files import write_atomic

    sweep = Sweep(tmp_path, runs=1, stops={"3DBall": LOW})
    made.append(sweep)
    monitor = Monitor(sweep.queue, logdir=tmp_path / "results")
    assert monitor._job("grid-0", current=True).conditions[0].min == 50
    job = sweep.queue.job("grid-0")
    relaxed = (dataclasses.replace(job.conditions[0], min=0.5),)
    write_atomic(
        sweep.queue.paths.job_file("grid-0"),
        dataclasses.replace(job, conditions=relaxed).to_json(),
    )
    assert monitor._job("grid-0").conditions[0].min == 50  # the cheap read: kept
    assert monitor._job("grid-0", current=True).conditions == relaxed


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_a_busy_monitor_and_lets_go_of_its_seat(
    made: list[Sweep | Board], tmp_path: Path, signum: int
) -> None:
    """Ctrl-C, or SIGTERM from a shutdown or scancel, while event files keep changing under
    the monitor's watch: it ends with 128 + the signal and says so, and a monitor started
    next acts at once (a killed one would leave its seat held for a lease)."""
    sweep = Sweep(tmp_path, runs=1, stops={"3DBall": LOW})
    made.append(sweep)
    results = tmp_path / "results"
    command = sweep.command("grid-monitor", "--logdir", str(results), "--forever")
    first = sweep.start(command)
    sweep.wait_for(lambda: sweep.events("monitor-started"))
    done = threading.Event()

    def keep_writing() -> None:  # what trainers and workers do to a results folder
        n = 0
        while not done.is_set() and n < 2000:
            nested = results / f"grid-{n}" / "3DBall" / "checkpoints"
            nested.mkdir(parents=True)
            (nested / "events.tmp").write_bytes(b"x" * 64)
            n += 1
            time.sleep(0.001)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.5)  # the watch relays writes to the monitor's loop
        first.send_signal(signum)
        assert first.wait(timeout=EXIT_S) == 128 + signum, sweep.output(first)
    finally:
        done.set()
        writer.join()
    said = sweep.output(first)
    assert f"monitor stopped by {signal.Signals(signum).name}" in said
    # Log lines only: no traceback, and none of watchdog's warnings about folders it found
    # twice while they were being made.
    assert all(line.startswith("[") for line in said.splitlines()), said[:2000]
    seat = ClaimFolder(sweep.queue.paths.monitor_claims, "monitor").look().owner
    assert seat is not None and seat.released
    second = sweep.start(command)
    sweep.wait_for(lambda: len(sweep.events("monitor-started")) == 2)
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=EXIT_S) == 130, sweep.output(second)
    assert "standing by" not in sweep.output(second)
