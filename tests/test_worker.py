"""grid-worker with real processes and real locks: exactly once, graceful stops, resumes."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil

from mlagents_grid.queue.claims import Claimer
from mlagents_grid.queue.ownership import Claims, Identity
from mlagents_grid.run.worker import IDLE_RECHECK

from .conftest import free_base_port
from .support.bounds import EXIT_S, REAP_S, SWEEP_S
from .support.sweep import Sweep

# A kill file's stop: the README's "within about 2 s", well under the worker's 5 s re-check
# (0.6 s at most in `make test-loaded` runs).
STOP_LATENCY_S = 2.0


def checkpoint_step(sweep: Sweep, run_id: str, behavior: str = "3DBall") -> int:
    path = sweep.root / "results" / run_id / behavior / "checkpoint.pt"
    return int(json.loads(path.read_text())["step"])


def test_three_workers_drain_twelve_jobs_exactly_once_without_sharing_ports(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=12,
        ticks=5,
        options={"default": {"step_delay": 0.05, "port_in_use": True}},
        plan_args=("--base-port", str(free_base_port(3))),
    )
    workers = [sweep.start_worker() for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert set(sweep.statuses().values()) == {"done"}
    started = [entry["run_id"] for entry in sweep.starts()]
    assert sorted(started) == sorted(sweep.queue.sweep.run_ids)
    # The fake trainer binds its port for real: a shared port would have failed a run.
    assert not sweep.events("port-in-use")
    intervals: dict[int, list[tuple[float, float]]] = {}
    for start in sweep.starts():
        end = next(e["time"] for e in sweep.exits(start["run_id"]) if e["pid"] == start["pid"])
        intervals.setdefault(start["port"], []).append((start["time"], end))
    for spans in intervals.values():
        spans.sort()
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert end <= begin
    assert len(intervals) == 3
    workers_seen = {run["worker"] for run in sweep.report()["runs"]}
    assert len(workers_seen) == 3


def test_worker_killed_mid_run_its_trainer_saves_and_the_next_worker_resumes(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=60,
        options={"default": {"step_delay": 0.05, "sigint_delay": 1.0}},
    )
    first = sweep.start_worker()
    sweep.wait_for_training("grid-0")  # it has a step to save
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=REAP_S)
    # A new worker must not start the run while the old trainer is still saving.
    second = sweep.start_worker("--wait")
    assert second.wait(timeout=SWEEP_S) == 0, sweep.output(second)
    starts = sweep.starts("grid-0")
    assert len(starts) == 2
    old_exit = next(e for e in sweep.exits("grid-0") if e["pid"] == starts[0]["pid"])
    assert old_exit["reason"] == "sigint"
    assert old_exit["time"] <= starts[1]["time"]
    assert starts[1]["resume"] is True
    assert starts[1]["start_step"] == old_exit["step"] > 0
    assert sweep.statuses() == {"grid-0": "done"}
    assert checkpoint_step(sweep, "grid-0") == 60


def test_a_killed_worker_interrupts_its_trainer_exactly_once(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """A second SIGINT while saving aborts mlagents-learn, which then can hang, lock held.

    Linux repeats the parent-death signal for each thread of the dying parent the orphan is
    passed through; a worker has several, so trainers are started by its one-threaded launcher.
    """
    for attempt in range(5):
        sweep = new_sweep(
            tmp_path / str(attempt),
            runs=1,
            ticks=1000,
            options={"default": {"step_delay": 0.01, "sigint_delay": 1.0}},
        )
        worker = sweep.start_worker("--wait")  # --wait: watcher threads, as in a real sweep
        sweep.wait_for_training("grid-0")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=REAP_S)
        sweep.wait_for(partial(sweep.exits, "grid-0"))
        time.sleep(0.2)
        sigints = [e for e in sweep.ledger_entries() if e.get("event") == "sigint"]
        assert len(sigints) == 1, f"attempt {attempt}: {len(sigints)} SIGINTs"


def test_ctrl_c_records_the_run_interrupted_and_a_new_worker_resumes_it(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=40, options={"default": {"step_delay": 0.05}})
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-0")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=EXIT_S) == 130
    assert sweep.statuses() == {"grid-0": "interrupted"}
    saved = checkpoint_step(sweep, "grid-0")
    assert 0 < saved < 40
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0
    assert sweep.starts("grid-0")[1]["resume"] is True
    assert sweep.starts("grid-0")[1]["start_step"] == saved
    assert sweep.statuses() == {"grid-0": "done"}


def test_a_kill_file_stops_a_run_gracefully_within_two_seconds(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=400, options={"default": {"step_delay": 0.05}})
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-0")
    asked = time.time()
    sweep.stop("grid-0", reason="too slow")
    exit_entry = sweep.wait_for(lambda: sweep.exits("grid-0"))[0]
    assert exit_entry["reason"] == "sigint"
    assert exit_entry["time"] - asked < STOP_LATENCY_S
    sweep.wait_for(lambda: sweep.statuses()["grid-0"] == "stopped")
    run = sweep.report()["runs"][0]
    assert run["stop_reason"] == "too slow"
    assert checkpoint_step(sweep, "grid-0") > 0
    sweep.stop("grid-1")
    assert worker.wait(timeout=EXIT_S) == 0
    assert sweep.statuses() == {"grid-0": "stopped", "grid-1": "stopped"}
    assert len(sweep.starts("grid-0")) == 1


def test_a_pending_run_stopped_by_hand_never_starts(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=2)
    sweep.stop("grid-1", reason="not this one")
    assert sweep.statuses()["grid-1"] == "stopped"
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0
    assert [e["run_id"] for e in sweep.starts()] == ["grid-0"]


def test_a_trainer_ignoring_sigint_is_escalated_and_its_child_is_gone(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=1000,
        options={"default": {"step_delay": 0.05, "ignore_sigint": True, "spawn_child": True}},
    )
    worker = sweep.start_worker("--grace", "1")
    child_file = sweep.root / "results" / "grid-0" / "child.pid"
    sweep.wait_for(child_file.exists)
    child = int(child_file.read_text())
    trainer = sweep.starts("grid-0")[0]["pid"]
    sweep.stop("grid-0")
    assert worker.wait(timeout=EXIT_S) == 0, sweep.output(worker)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(trainer)
    left = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == trainer and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process.pid)
    assert left == []
    assert sweep.statuses() == {"grid-0": "stopped"}
    assert "SIGTERM" in sweep.output(worker)


def test_a_crashing_trainer_fails_after_three_attempts_while_others_finish(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=3,
        options={"default": {"step_delay": 0.01}, "runs": {"grid-1": {"crash": 3}}},
    )
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "failed", "grid-2": "done"}
    failed = sweep.report()["runs"][1]
    assert failed["exit_code"] == 3
    assert failed["attempts"] == 3
    assert failed["log_tail"]
    assert len(sweep.starts("grid-1")) == 3
    assert [e["event"] for e in sweep.events() if e.get("run_id") == "grid-1"] == [
        "started",
        "attempt-failed",
        "started",
        "attempt-failed",
        "started",
        "failed",
    ]


def test_a_run_that_fails_then_succeeds_is_retried(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path, runs=1, ticks=3, options={"default": {"crash": 1, "crash_times": 1}}
    )
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "done"}
    run = sweep.report()["runs"][0]
    assert (run["attempts"], run["failures"]) == (2, 1)
    # The crash left a results folder without a checkpoint: the retry must pass --force.
    assert sweep.starts("grid-0")[1]["force"] is True


def test_a_port_in_use_moves_the_run_to_another_slot(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    port = free_base_port(2)  # the next one free too, for the run to move to
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        sweep = new_sweep(
            tmp_path,
            runs=1,
            ticks=2,
            options={"default": {"port_in_use": True}},
            plan_args=("--base-port", str(port)),
        )
        worker = sweep.start_worker()
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "done"}
    run = sweep.report()["runs"][0]
    assert run["port"] == port + 1
    assert run["attempts"] == 1 and run["failures"] == 0
    assert [e["port"] for e in sweep.events("port-in-use")] == [port]


def test_a_worker_started_with_sigint_ignored_still_stops_its_trainer_gracefully(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=400, options={"default": {"step_delay": 0.05}})

    def ignore_sigint() -> None:
        import os

        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    worker = sweep.start_worker(preexec=ignore_sigint)
    sweep.wait_for_training("grid-0")
    sweep.stop("grid-0")
    assert worker.wait(timeout=EXIT_S) == 0
    assert sweep.exits("grid-0")[0]["reason"] == "sigint"
    assert sweep.statuses() == {"grid-0": "stopped"}
    assert checkpoint_step(sweep, "grid-0") > 0


def test_a_waiting_worker_takes_over_the_run_of_a_dead_peer(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=40, options={"default": {"step_delay": 0.05}})
    first = sweep.start_worker()
    sweep.wait_for(lambda: len(sweep.starts()) == 1)
    waiting = sweep.start_worker("--wait")
    time.sleep(0.5)
    assert waiting.poll() is None
    first.send_signal(signal.SIGKILL)
    assert waiting.wait(timeout=SWEEP_S) == 0, sweep.output(waiting)
    assert len(sweep.starts("grid-0")) == 2
    assert sweep.statuses() == {"grid-0": "done"}


def test_a_waiting_worker_claims_a_run_once_another_process_lets_go_of_it(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """A run's lock held by a process that records no trainer running (grid-monitor settling
    a rung decision, an orphaned launcher writing its exit record): its release wakes an idle
    worker, which otherwise waited for its 30 s recheck."""
    sweep = new_sweep(tmp_path, runs=1, ticks=2)
    held = Claimer(sweep.queue, Claims(Identity.this(), sweep.queue.sweep.lease)).next()
    assert held is not None
    worker = sweep.start_worker("--wait")
    sweep.wait_for(lambda: sweep.events("worker-started"))
    time.sleep(1)  # it found the lock taken and went idle
    assert not sweep.starts("grid-0")
    released = time.time()
    held.release()
    started = sweep.wait_for(lambda: sweep.starts("grid-0"))[0]
    assert started["time"] - released < IDLE_RECHECK / 3
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)


def test_results_without_a_checkpoint_are_overwritten_with_force(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=2)
    (sweep.root / "results" / "grid-0" / "3DBall").mkdir(parents=True)
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0
    start = sweep.starts("grid-0")[0]
    assert (start["force"], start["resume"]) == (True, False)


def test_worker_bad_arguments_exit_2(new_sweep: Callable[..., Sweep], tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=2)
    for args, expected in [
        (("--trainer", "no-such-trainer-xyz"), "'no-such-trainer-xyz' not found"),
        (("--gpus", "a,b"), "--gpus 'a,b'"),
        (("--max-attempts", "0"), "--max-attempts"),
    ]:
        proc = sweep.start(sweep.command("grid-worker", *args))
        assert proc.wait(timeout=EXIT_S) == 2
        output = sweep.output(proc)
        assert expected in output and "Traceback" not in output
    assert sweep.statuses() == {"grid-0": "pending"}
