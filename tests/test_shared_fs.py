"""Claims on shared filesystems: two simulated hosts on one queue, whatever file locks do.

Hosts are UTS namespaces with hostnames of their own (root only; skipped with the reason
elsewhere). File locks on the queue get the rules of real cluster mounts from an LD_PRELOAD
shim (tests/support/lockshim.c, compiled here with the system compiler): local to each host (NFS
`local_lock=all`, Lustre `localflock`), ignored (a misconfigured client), absent (ENOSYS:
Lustre without `-o flock`) or NFSv4's (LOCK_EX on a read-only descriptor is EBADF). A host
crash is a PID namespace whose every process is killed at once; a frozen owner is a worker
and its launcher stopped with SIGSTOP for longer than the lease.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from .conftest import as_host, fake_trainer_command
from .support.sweep import Sweep

QUICK_TRAINER = Path(__file__).resolve().parent / "support" / "quick_trainer.sh"
SHIM_SOURCE = Path(__file__).resolve().parent / "support" / "lockshim.c"
ALPHA, BETA = "grid-alpha", "grid-beta"
# Generous bounds, sized for a machine 3-4 times slower than a quiet 2-core one.
DRAIN_S = 180
TRAINING_S = 120
# A short lease, so that takeovers happen within the test; long enough that a loaded machine
# renews it in time (the owner gives up after half of it without a renewal).
LEASE_S = 8


@pytest.fixture(scope="session")
def lockshim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler here to build the lock shim (tests/support/lockshim.c)")
    built = tmp_path_factory.mktemp("lockshim") / "lockshim.so"
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(built), str(SHIM_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.skip(f"the lock shim does not build here: {result.stderr.strip()[-200:]}")
    return built


def shim_env(shim: Path, mode: str, root: Path) -> dict[str, str]:
    shadow = root / "shadow-locks"
    shadow.mkdir(exist_ok=True)
    return {
        "LD_PRELOAD": str(shim),
        "GRID_LOCKSHIM_MODE": mode,
        "GRID_LOCKSHIM_ROOT": os.path.realpath(root),
        "GRID_LOCKSHIM_SHADOW": str(shadow),
        "GRID_LOCKSHIM_LOG": str(root / "lockshim.log"),
    }


def trainer(entry: dict[str, Any]) -> tuple[int, int | None]:
    """A trainer in the ledger: its pid within its PID namespace (hosts may have their own)."""
    return entry["pid"], entry.get("pidns")


def spans(sweep: Sweep, crash: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Each run's trainers as (start, end); one killed in a crash ends at the crash."""
    ends = {trainer(e): e["time"] for e in sweep.exits()}
    found: dict[str, list[tuple[float, float]]] = {}
    for start in sweep.starts():
        end = ends.get(trainer(start), crash if crash is not None else float("inf"))
        found.setdefault(start["run_id"], []).append((start["time"], end))
    return found


def assert_never_twice_at_once(found: dict[str, list[tuple[float, float]]]) -> None:
    for run_id, intervals in found.items():
        intervals.sort()
        for (_, end), (begin, _) in itertools.pairwise(intervals):
            assert end <= begin, f"{run_id} trained twice at the same time: {intervals}"


@pytest.mark.usefixtures("namespaces")
@pytest.mark.parametrize("mode", ["local", "ignore", "enosys", "nfs4"])
def test_two_hosts_train_every_run_once_whatever_the_locks_do(
    lockshim: Path, new_sweep: Callable[..., Sweep], tmp_path: Path, mode: str
) -> None:
    sweep = new_sweep(tmp_path, runs=40, ticks=1)
    env = {**shim_env(lockshim, mode, tmp_path), "QUICK_SLEEP": "0.3"}
    command = sweep.command("grid-worker", "--trainer", str(QUICK_TRAINER))
    workers = [sweep.start(as_host(h, command), env=env) for h in (ALPHA, BETA) for _ in range(2)]
    codes = [w.wait(timeout=DRAIN_S) for w in workers]
    assert codes == [0, 0, 0, 0], [sweep.output(w) for w in workers]
    assert set(sweep.statuses().values()) == {"done"}
    starts = Counter(e["run_id"] for e in sweep.starts())
    assert sorted(starts) == sorted(sweep.queue.sweep.run_ids)
    assert set(starts.values()) == {1}, {r: n for r, n in starts.items() if n > 1}
    hosts = {row["worker"].split(":")[0] for row in sweep.report()["runs"]}
    assert hosts == {ALPHA, BETA}
    log = (tmp_path / "lockshim.log").read_text().splitlines()
    loaded = {line.split()[1] for line in log if line.startswith("loaded")}
    assert {ALPHA, BETA} <= loaded  # the shim was in both hosts' processes
    # Claims never ask the filesystem for a lock: what it does with one cannot matter.
    assert [line for line in log if line.startswith("lock")] == []


def start_crashable_host(sweep: Sweep, command: list[str], workers: int) -> subprocess.Popen[str]:
    """`workers` workers on host ALPHA, in a PID namespace of their own (killed as one)."""
    script = 'hostname "$0" && for i in $(seq "$1"); do "${@:2}" & done; wait'
    return sweep.start(
        [
            "unshare",
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            script,
            ALPHA,
            str(workers),
            *command,
        ]
    )


@contextlib.contextmanager
def namespace_init(unshare: subprocess.Popen[str]) -> Iterator[Callable[[], int]]:
    """The pid (outside) of the namespace's first process; killing it kills the host."""

    def init() -> int:
        children = psutil.Process(unshare.pid).children()
        assert children, "the namespace has not started"
        return children[0].pid

    try:
        yield init
    finally:
        with contextlib.suppress(psutil.Error, AssertionError, ProcessLookupError):
            os.kill(init(), signal.SIGKILL)


def training_on(sweep: Sweep, host: str) -> list[str]:
    """Runs whose state says a worker of `host` trains them."""
    return [
        row["run_id"]
        for row in sweep.report()["runs"]
        if row["status"] == "running" and str(row.get("worker") or "").startswith(host + ":")
    ]


@pytest.mark.usefixtures("namespaces")
def test_a_crashed_hosts_runs_are_taken_over_after_the_lease(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=6,
        ticks=100,
        options={"default": {"step_delay": 0.1}},
        plan_args=("--lease", str(LEASE_S)),
    )
    command = sweep.command("grid-worker", "--trainer", fake_trainer_command())
    unshare = start_crashable_host(sweep, command, workers=2)
    with namespace_init(unshare) as init:
        taken = sweep.wait_for(
            lambda: (runs := training_on(sweep, ALPHA)) and len(runs) == 2 and runs,
            timeout=TRAINING_S,
        )
        for run_id in taken:  # training for real: its trainer has written its first summary
            sweep.wait_for_training(run_id)
        survivors = [sweep.start(as_host(BETA, [*command, "--wait"])) for _ in range(2)]
        crash = time.time()
        os.kill(init(), signal.SIGKILL)  # every process of the host at once
    # Until the lease lapses, grid-status shows the dead host's runs with their owner.
    shown = {row["run_id"]: row for row in sweep.report()["runs"]}
    for run_id in taken:
        lease = shown[run_id].get("lease")
        if shown[run_id]["status"] == "running" and lease is not None:
            assert lease["owner"].startswith(ALPHA + ":") and lease["renewed"] <= time.time()
    for worker in survivors:
        assert worker.wait(timeout=DRAIN_S) == 0, sweep.output(worker)
    assert set(sweep.statuses().values()) == {"done"}
    assert_never_twice_at_once(spans(sweep, crash))
    ended = {trainer(e) for e in sweep.exits()}
    killed = {e["run_id"] for e in sweep.starts() if trainer(e) not in ended}
    assert killed, "the crash killed no trainer"
    takeovers = {e["run_id"]: e for e in sweep.events("taken-over")}
    assert killed <= set(takeovers)
    for event in takeovers.values():
        assert event["previous"].startswith(ALPHA + ":")
        assert event["reason"] == "its lease lapsed"
        # The host renewed every sixth of the lease until it died; a peer waits a whole lease
        # from the last renewal it saw.
        assert event["time"] - crash >= LEASE_S * 5 / 6 - 0.5


@pytest.mark.usefixtures("namespaces")
def test_a_frozen_owner_is_taken_over_and_kills_its_trainer_without_a_save_when_it_wakes(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    # Checkpoints as it goes, so that its successor resumes (with --resume, which leaves the
    # results folder alone) while it still trains.
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=200,
        options={"default": {"step_delay": 0.1, "checkpoint_every": 5}},
        plan_args=("--lease", str(LEASE_S)),
    )
    command = sweep.command("grid-worker", "--trainer", fake_trainer_command())
    owner = sweep.start(as_host(ALPHA, command))
    checkpoint = tmp_path / "results" / "grid-0" / "3DBall" / "checkpoint.pt"
    sweep.wait_for(checkpoint.exists, timeout=TRAINING_S)
    first = sweep.starts("grid-0")[0]
    worker = psutil.Process(owner.pid)  # `unshare` exec'd the shell, which exec'd the worker
    launcher = worker.children()
    assert len(launcher) == 1
    frozen = [worker, *launcher]
    frozen_at = time.time()
    for process in frozen:
        process.send_signal(signal.SIGSTOP)
    try:
        successor = sweep.start(as_host(BETA, [*command, "--wait"]))
        sweep.wait_for(lambda: len(sweep.starts("grid-0")) == 2, timeout=TRAINING_S)
        assert _alive(first["pid"])  # it trained on while its owner was frozen
    finally:
        for process in frozen:
            process.send_signal(signal.SIGCONT)
    # Awake, the old owner's launcher finds its lease lapsed: SIGKILL, no save.
    sweep.wait_for(lambda: not _alive(first["pid"]), timeout=TRAINING_S)
    assert owner.wait(timeout=DRAIN_S) == 0, sweep.output(owner)
    assert successor.wait(timeout=DRAIN_S) == 0, sweep.output(successor)
    mine = [e for e in sweep.ledger_entries() if e.get("pid") == first["pid"]]
    assert [e["event"] for e in mine] == ["start"]  # no sigint save, no exit of its own
    assert sweep.statuses() == {"grid-0": "done"}
    assert sweep.report()["runs"][0]["worker"].startswith(BETA + ":")
    assert sweep.starts("grid-0")[1]["resume"]
    assert json.loads(checkpoint.read_text())["step"] == 200
    old = f"{ALPHA}:{owner.pid}"
    late = [e for e in sweep.events() if e.get("worker") == old and e["time"] > frozen_at]
    assert {e["event"] for e in late} <= {"worker-exited"}, late
    assert "grid-0: the claim is lost (its lease was not renewed" in sweep.output(owner)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
