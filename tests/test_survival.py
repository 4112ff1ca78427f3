"""What the core survives: power loss (fsync order), orphans, whole-job signals, probes, lost
launchers and workers killed in the instant after their trainer finished."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from mlagents_grid import cli
from mlagents_grid.run.trainer import TERM_GRACE

from .conftest import BIN, ROOT, fake_trainer_command, run_cli
from .support.bounds import EXIT_S, REAP_S, REPEATED_TEST_S, SWEEP_S
from .support.sweep import Sweep

# The escalation runs on its own clock (grace, then TERM_GRACE); this generous margin is for
# scheduling only: noticing the worker's death, signalling, reaping (under 1 s, loaded).
ESCALATION_MARGIN_S = 15
STORM_SCRIPT_S = 60  # the 3 s wakeup storm script has ended (3.2 s, loaded)
QUICK_TRAINER = Path(__file__).resolve().parent / "support" / "quick_trainer.sh"
QUEUE_FOLDERS = ("state", "final", "kill", "exits")


def strace(command: list[str], out: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=write,fsync,fdatasync,rename,renameat,renameat2,syncfs,sync",
            "-o",
            str(out),
            *command,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=SWEEP_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text().splitlines()


def durable_writes(lines: list[str], queue: Path) -> dict[str, list[str]]:
    """For every rename into a queue folder: the order of write, fsync, rename, fsync(folder)."""
    found: dict[str, list[str]] = {}
    for index, line in enumerate(lines):
        renamed = re.search(r'rename(?:at2?)?\((?:\S+, )?"([^"]+)", (?:\S+, )?"([^"]+)"', line)
        if not renamed or not line.rstrip().endswith("= 0"):
            continue
        source, target = renamed.groups()
        folder = Path(target).parent
        if folder.parent != queue or folder.name not in QUEUE_FOLDERS:
            continue
        before, after = lines[:index], lines[index + 1 :]
        steps = []
        if any("write(" in b and f"<{source}>" in b for b in before):
            steps.append("write")
        if any(re.search(rf"f(data)?sync\(\d+<{re.escape(source)}>", b) for b in before):
            steps.append("fsync")
        steps.append("rename")
        if any(re.search(rf"fsync\(\d+<{re.escape(str(folder))}>\)", a) for a in after[:50]):
            steps.append("fsync-folder")
        found.setdefault(f"{folder.name}/{Path(target).name}", []).append(",".join(steps))
    return found


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_every_state_write_is_write_fsync_rename_fsync_folder(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=2)
    queue = sweep.queue_dir.resolve()
    stop = strace(
        sweep.command("grid-stop", "grid-1", "--reason", "not this one"),
        tmp_path / "stop.trace",
        sweep.env,
    )
    work = strace(
        sweep.command("grid-worker", "--trainer", fake_trainer_command()),
        tmp_path / "worker.trace",
        sweep.env,
    )
    found = durable_writes(stop + work, queue)
    # Each under the generation of the claim that wrote it (grid-stop's, the worker's).
    expected = {
        "kill/grid-1",
        "final/grid-1.g1.json",
        "state/grid-0.g1.json",
        "exits/grid-0.g1.json",
        "final/grid-0.g1.json",
    }
    assert expected <= set(found), found
    for target, orders in found.items():
        assert set(orders) == {"write,fsync,rename,fsync-folder"}, (target, orders)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_plan_is_synced_before_it_is_renamed_into_place(tmp_path: Path) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text("behaviors:\n  B: {max_steps: 5}\n  C: {x: {opt_values: [1, 2, 3]}}\n")
    queue = tmp_path / "q"
    lines = strace(
        [str(BIN / "grid-plan"), str(config), "--queue", str(queue)],
        tmp_path / "plan.trace",
        dict(os.environ),
    )
    synced = [i for i, line in enumerate(lines) if re.search(r"\b(syncfs|sync)\(", line)]
    renamed = [i for i, line in enumerate(lines) if f'"{queue}") = 0' in line and "rename" in line]
    assert synced and len(renamed) == 1, lines
    folder_synced = [
        i for i, line in enumerate(lines) if re.search(rf"fsync\(\d+<{tmp_path}>\)", line)
    ]
    assert synced[0] < renamed[0] < folder_synced[-1]


def test_an_orphan_ignoring_sigint_is_escalated_by_the_launcher_after_its_worker_dies(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=1000,
        options={"default": {"step_delay": 0.05, "ignore_sigint": True, "spawn_child": True}},
    )
    grace = 3
    worker = sweep.start_worker("--grace", str(grace))
    child_file = sweep.root / "results" / "grid-0" / "child.pid"
    sweep.wait_for(child_file.exists)
    child = psutil.Process(int(child_file.read_text()))
    trainer = psutil.Process(sweep.starts("grid-0")[0]["pid"])
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=REAP_S)
    killed_at = time.monotonic()
    _, alive = psutil.wait_procs([trainer, child], timeout=grace + TERM_GRACE + ESCALATION_MARGIN_S)
    assert not alive, f"alive {time.monotonic() - killed_at:.1f}s after the worker died: {alive}"
    sweep.wait_for(lambda: sweep.statuses() == {"grid-0": "interrupted"})
    record = sweep.exit_record("grid-0")
    assert record is not None and record["stop"] == "orphaned"
    assert record["exit_code"] in (-signal.SIGTERM, -signal.SIGKILL)
    sweep.options = {"default": {"step_delay": 0.01}}
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0, sweep.output(again)
    assert sweep.statuses() == {"grid-0": "done"}
    assert sweep.report()["runs"][0]["failures"] == 0


@pytest.mark.timeout(REPEATED_TEST_S)
def test_sigterm_to_worker_and_trainer_at_once_is_an_interruption_20_times_in_a_row(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """What SLURM's scancel does: SIGTERM to every process of the task in the same instant."""
    for attempt in range(20):
        sweep = new_sweep(
            tmp_path / str(attempt), runs=1, ticks=1000, options={"default": {"step_delay": 0.02}}
        )
        worker = sweep.start_worker("--wait")
        sweep.wait_for_training("grid-0")
        trainer = sweep.starts("grid-0")[0]["pid"]
        # Back to back, in either order; the second may find its process already gone.
        for pid in (worker.pid, trainer)[:: 1 if attempt % 2 else -1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        assert worker.wait(timeout=EXIT_S) == 128 + signal.SIGTERM, sweep.output(worker)
        run = sweep.report()["runs"][0]
        assert (run["status"], run["failures"]) == ("interrupted", 0), (attempt, run)
        assert [e["event"] for e in sweep.events() if e.get("run_id") == "grid-0"] == [
            "started",
            "interrupted",
        ]
        assert "stopping" in sweep.output(worker) or "interrupted" in sweep.output(worker)


def test_a_status_loop_reading_as_fast_as_it_can_never_makes_a_claim_fail(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=200, ticks=1, options={"default": {"step_delay": 0.0}})
    # Twenty runs a dead worker left running: the ones readers look at and claimers take over.
    from mlagents_grid.queue import transitions
    from mlagents_grid.queue.claims import Claimer
    from mlagents_grid.queue.ownership import Claims, Host, Identity, Process

    dead = Claimer(sweep.queue, Claims(Identity(Host.this(), Process(2**22 + 3, 1.0)), 120.0))
    for _ in range(20):
        claim = dead.next()
        assert claim is not None
        started = transitions.started(claim.state, attempts=1, worker="dead")
        assert sweep.queue.ledger.write(claim.hold, started)
    stop = threading.Event()
    probes = Counter[str]()

    def probe() -> None:
        while not stop.is_set():
            for run_id in sweep.queue.sweep.run_ids[:40]:
                probes[str(sweep.queue.owner(run_id).liveness)] += 1
            sweep.queue.running()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        workers = [
            sweep.start(sweep.command("grid-worker", "--trainer", str(QUICK_TRAINER)))
            for _ in range(3)
        ]
        for worker in workers:
            assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    finally:
        stop.set()
        prober.join(timeout=EXIT_S)
    assert sum(probes.values()) > 100
    assert set(sweep.statuses().values()) == {"done"}


def test_a_trainer_that_killed_its_worker_and_then_finished_is_done_and_never_restarted(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=5, options={"default": {"kill_worker_at_end": True}})
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == -signal.SIGKILL
    sweep.wait_for(lambda: sweep.exit_record("grid-0") is not None)
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0, sweep.output(again)
    assert len(sweep.starts("grid-0")) == 1
    assert sweep.statuses() == {"grid-0": "done"}
    assert "after its worker died; recorded done" in sweep.output(again)


@pytest.mark.timeout(REPEATED_TEST_S)
@pytest.mark.slow
def test_kill_9_storm_with_a_trainer_that_cannot_resume_completes_no_run_twice(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """120 jobs of 0.5 s through 4 workers, 20 kill -9s: a finished job is never rerun."""
    sweep = new_sweep(tmp_path, runs=120, ticks=1)
    env = {**sweep.env, "QUICK_SLEEP": "0.5"}
    command = sweep.command("grid-worker", "--wait", "--trainer", str(QUICK_TRAINER))

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    live = [start() for _ in range(4)]
    try:
        for _ in range(20):
            time.sleep(0.4)
            victim = live.pop(0)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=REAP_S)
            live.append(start())
        for worker in live:
            assert worker.wait(timeout=SWEEP_S) == 0
    finally:
        for worker in live:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    ends = Counter(e["run_id"] for e in sweep.exits() if e.get("reason") == "end")
    assert set(sweep.statuses().values()) == {"done"}
    assert sorted(ends) == sorted(sweep.queue.sweep.run_ids)
    assert [run for run, n in ends.items() if n > 1] == []


def test_a_worker_whose_launcher_was_killed_stops_and_fails_no_run(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=9,
        ticks=20,
        options={"default": {"step_delay": 0.02}, "runs": {"grid-0": {"kill_launcher": True}}},
    )
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 1, sweep.output(worker)
    output = sweep.output(worker)
    assert "the trainer launcher died" in output and "Traceback" not in output
    assert sweep.statuses()["grid-0"] == "interrupted"
    sigints = [e for e in sweep.ledger_entries() if e.get("event") == "sigint"]
    assert len(sigints) == 1  # its trainer still got its one stop, and saved
    assert "failed" not in sweep.statuses().values()
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0, sweep.output(again)
    assert set(sweep.statuses().values()) == {"done"}
    assert all(run["failures"] == 0 for run in sweep.report()["runs"])


def test_a_trainer_that_cannot_start_stops_the_worker_and_leaves_every_run_pending(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=5, ticks=2)
    trainer = tmp_path / "vanishing-trainer"
    trainer.write_text("#!/bin/sh\nexit 0\n")
    trainer.chmod(0o755)
    worker = sweep.start(
        [
            sys.executable,
            "-c",
            "import os, sys; from mlagents_grid import cli; from mlagents_grid.run import worker; "
            "check = worker.trainer_command; "
            "worker.trainer_command = lambda given: [check(given)[0], os.unlink(given)][:1]; "
            "sys.argv = ['grid-worker', *sys.argv[2:]]; cli.worker_main()",
            str(trainer),
            "--queue",
            str(sweep.queue_dir),
            "--trainer",
            str(trainer),
        ]
    )
    # The trainer is checked when the worker starts, then vanishes before the first run.
    assert worker.wait(timeout=EXIT_S) == 1, sweep.output(worker)
    output = sweep.output(worker)
    assert "3 trainers in a row could not start" in output
    assert set(sweep.statuses().values()) == {"pending"}
    assert len(sweep.events("start-failed")) == 3


def test_wakeups_from_a_signal_handler_never_deadlock(tmp_path: Path) -> None:
    """threading.Event.set from a handler can deadlock on the event's own lock; Wakeup cannot."""
    script = tmp_path / "storm.py"
    script.write_text(
        "import signal, threading, time\n"
        "from mlagents_grid.wakeup import Wakeup\n"
        "wake = Wakeup()\n"
        "signal.signal(signal.SIGALRM, lambda *_: wake.set())\n"
        "threading.Thread(target=lambda: [wake.set() for _ in iter(int, 1)], daemon=True)"
        ".start()\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)\n"
        "end = time.monotonic() + 3\n"
        "while time.monotonic() < end:\n"
        "    wake.wait(0.001)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=STORM_SCRIPT_S,
        cwd=ROOT,
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_grid_show_prints_the_config_and_the_command_a_worker_would_run(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=3, plan_args=("--no-graphics",))
    queue = ["--queue", str(sweep.queue_dir)]
    shown = run_cli(cli.show_command, "grid-show", [*queue, "grid-1"])
    assert shown.code == 0, shown.err
    assert "index: 1" in shown.out and "max_steps: 3" in shown.out
    assert not sweep.queue.paths.config_file("grid-1").exists()  # shown, not written
    command = run_cli(cli.show_command, "grid-show", [*queue, "grid-1", "--command"])
    assert command.code == 0, command.err
    assert "--run-id grid-1" in command.out and "--no-graphics" in command.out
    assert "--resume" not in command.out
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0
    assert sweep.queue.paths.config_file("grid-1").read_text() == shown.out
    again = run_cli(cli.show_command, "grid-show", [*queue, "grid-1", "--command"])
    assert again.out.split()[-2:] == ["--resume", "--no-graphics"]
    status = run_cli(cli.status_command, "grid-status", [*queue, "--json"])
    assert '"config": null' not in status.out
    unknown = run_cli(cli.show_command, "grid-show", [*queue, "grid-11"])
    assert unknown.code == 2
    assert "no run 'grid-11'" in unknown.err and "grid-1" in unknown.err
    assert len(unknown.err.strip().splitlines()) == 1


def test_status_json_gives_no_config_path_before_the_run_starts(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=2)
    assert sweep.report()["runs"][0]["config"] is None


def test_trainer_arguments_are_not_checked_without_mlagents_and_grid_plan_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text("behaviors:\n  B: {}\n")
    result = run_cli(cli.plan, "grid-plan", ["g.yaml", "--num-env=2"])
    assert result.code == 0
    assert "trainer arguments (--num-env=2) were not checked" in result.err


def test_trainers_that_exit_at_once_are_all_heard(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """The launcher reports such an exit right after the pid: it must never be dropped."""
    sweep = new_sweep(tmp_path, runs=300, ticks=1)
    workers = [sweep.start(sweep.command("grid-worker", "--trainer", "true")) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert set(sweep.statuses().values()) == {"done"}
