"""grid-submit: the batch script, and workers as an array job on a real one-node SLURM.

The cluster tests start SLURM with scripts/start-slurm.sh (root, Debian's packages) unless
one already answers at $SLURM_CONF, and skip with the reason where it cannot start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.job import INTERRUPTED

from .conftest import BIN, ROOT, fake_trainer_command, run_cli, tree
from .support.bounds import SWEEP_S
from .support.sweep import Sweep

SLURM_DIR = Path(os.environ.get("GRID_SLURM_DIR", "/tmp/mlagents-grid-slurm"))
# Bounds of the SLURM commands, generous for a loaded 2-core machine (quiet figure).
SLURM_START_S = 300  # scripts/start-slurm.sh brings up the one-node cluster (3-5 s; longer
# the first time, when it installs Debian's packages)
SLURM_STOP_S = 60  # scripts/stop-slurm.sh (1-2 s)
SLURM_COMMAND_S = 60  # sinfo, sbatch (through grid-submit), squeue or scancel answers (0.1-1 s)
# Above the waits of the array test (submit 60 + all training 60 + scancels 2 x 60 + both
# interrupted 60 + drained 120 + squeue 60 + scancel 60 = 540 s; 20 s on a quiet machine).
# Starting SLURM (the module fixture) is left out.
ARRAY_TEST_S = 600


def slurm_answers(env: dict[str, str]) -> bool:
    if shutil.which("sinfo") is None or not Path(env["SLURM_CONF"]).is_file():
        return False
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%T"],
            env=env,
            capture_output=True,
            text=True,
            timeout=SLURM_COMMAND_S,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and "idle" in done.stdout.split()


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.setdefault("SLURM_CONF", str(SLURM_DIR / "slurm.conf"))
    started = False
    if not slurm_answers(env):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "start-slurm.sh")],
            capture_output=True,
            text=True,
            timeout=SLURM_START_S,
        )
        if done.returncode != 0 or not slurm_answers(env):
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            pytest.skip(f"SLURM could not start here ({why}); see README, Running on a cluster")
        env["SLURM_CONF"] = str(SLURM_DIR / "slurm.conf")
        started = True
    yield env
    if started:
        subprocess.run(["bash", str(ROOT / "scripts" / "stop-slurm.sh")], timeout=SLURM_STOP_S)


def submit(sweep: Sweep, env: dict[str, str], tasks: int) -> str:
    done = subprocess.run(
        sweep.command("grid-submit", "--slurm", str(tasks), "--trainer", fake_trainer_command()),
        env={**sweep.env, "SLURM_CONF": env["SLURM_CONF"]},
        capture_output=True,
        text=True,
        timeout=SLURM_COMMAND_S,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(rf"Submitted SLURM job (\d+): {tasks} workers", done.stdout)
    assert found, done.stdout
    return found.group(1)


def slurm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=SLURM_COMMAND_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slurm
@pytest.mark.timeout(ARRAY_TEST_S, func_only=True)
def test_array_job_drains_the_sweep_through_a_cancel_and_a_time_limit_warning(
    slurm_env: dict[str, str], new_sweep, tmp_path: Path
) -> None:
    # Every run saves a checkpoint at its first step and stays there until the test has
    # signalled the tasks: all three tasks train at once however late SLURM starts the last.
    signalled = tmp_path / "signalled"
    sweep = new_sweep(
        tmp_path,
        runs=6,
        ticks=20,
        options={"default": {"step_delay": 0.05, "gate_at": {"1": str(signalled)}}},
    )
    job = submit(sweep, slurm_env, 3)
    try:
        # Once all three tasks train, cancel task 1 outright and give task 2 the warning
        # SLURM sends before a time limit (--signal=B:INT@120 reaches the batch shell).
        def training_per_task() -> dict[str, str] | None:
            rows = sweep.report()["runs"]
            by_task = {r["slurm"]: r["run_id"] for r in rows if r["status"] == "running"}
            ready = len(by_task) == 3 and all(
                (sweep.root / "results" / run / "3DBall" / "checkpoint.pt").exists()
                for run in by_task.values()
            )
            return by_task if ready else None

        by_task = sweep.wait_for(training_per_task)
        cancelled, warned = by_task[f"slurm {job}_1"], by_task[f"slurm {job}_2"]
        slurm(slurm_env, "scancel", f"{job}_1")
        slurm(slurm_env, "scancel", "--batch", "--signal=INT", f"{job}_2")
        sweep.wait_for(lambda: {sweep.statuses()[r] for r in (cancelled, warned)} == {INTERRUPTED})
        signalled.touch()
        sweep.wait_for(lambda: set(sweep.statuses().values()) == {"done"}, timeout=SWEEP_S)
        sweep.wait_for(lambda: not slurm(slurm_env, "squeue", "-h", "-j", job).strip())
    finally:
        subprocess.run(["scancel", job], env=slurm_env, timeout=SLURM_COMMAND_S)

    interrupted = {event["run_id"] for event in sweep.events("interrupted")}
    assert interrupted == {cancelled, warned}
    for row in sweep.report()["runs"]:
        run = row["run_id"]
        starts, ends = sweep.starts(run), [e for e in sweep.exits(run) if e["reason"] == "end"]
        assert len(ends) == 1 and ends[0]["step"] == 20, run
        if run in interrupted:
            assert [s["resume"] for s in starts] == [False, True], run
            assert starts[1]["start_step"] > 0
            assert row["slurm"] not in (f"slurm {job}_1", f"slurm {job}_2")
        else:
            assert len(starts) == 1, run
    # The warned trainer saved on SIGINT and the resume continued from exactly there.
    saved = [e["step"] for e in sweep.exits(warned) if e["reason"] == "sigint"]
    assert saved == [sweep.starts(warned)[1]["start_step"]]
    task_log = (sweep.queue_dir / "logs" / f"slurm-{job}_0.out").read_text()
    assert f"slurm {job}_0" in task_log
    started = {e["slurm"] for e in sweep.events("worker-started")}
    assert started == {f"slurm {job}_{task}" for task in range(3)}


@pytest.mark.slurm
def test_a_job_sbatch_refuses_exits_2_with_its_reason_and_changes_nothing(
    slurm_env: dict[str, str], new_sweep, tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    before = tree(sweep.queue_dir)
    done = subprocess.run(
        sweep.command("grid-submit", "--slurm", "2", "--", "--partition=no-such-partition"),
        env={**sweep.env, "SLURM_CONF": slurm_env["SLURM_CONF"]},
        capture_output=True,
        text=True,
        timeout=SLURM_COMMAND_S,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("grid-submit: sbatch refused the job: ")
    assert "partition" in done.stderr.lower()
    assert len(done.stderr.strip().splitlines()) == 1
    assert tree(sweep.queue_dir) == before


def test_print_shows_the_script_and_submits_nothing(new_sweep, tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    before = tree(sweep.queue_dir)
    result = run_cli(
        cli.submit_command,
        "grid-submit",
        ["--queue", str(sweep.queue_dir), "--slurm", "4", "--gpus-per-worker", "2", "--print"],
    )
    assert result.code == 0, result.err
    script = result.out
    assert "#SBATCH --array=0-3" in script
    assert "#SBATCH --signal=B:INT@120" in script
    assert "#SBATCH --gpus-per-task=2" in script
    assert f"exec {BIN / 'grid-worker'} --queue {sweep.queue_dir.absolute()} --wait" in script
    assert tree(sweep.queue_dir) == before


def test_the_script_gives_the_worker_the_tasks_gpus(new_sweep, tmp_path: Path) -> None:
    """SLURM's CUDA_VISIBLE_DEVICES stays; the worker picks devices 0..G-1 within it."""
    sweep = new_sweep(tmp_path, runs=1)
    result = run_cli(
        cli.submit_command,
        "grid-submit",
        [
            "--queue",
            str(sweep.queue_dir),
            "--slurm",
            "1",
            "--gpus-per-worker",
            "2",
            "--trainer",
            fake_trainer_command(),
            "--print",
        ],
    )
    script = tmp_path / "worker.sbatch"
    script.write_text(result.out)
    env = {**sweep.env, "CUDA_VISIBLE_DEVICES": "4,7"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=SWEEP_S)
    assert done.returncode == 0, done.stderr
    start = sweep.starts("grid-0")[0]
    assert (start["device"], start["cuda_visible"]) == ("cuda:0", "4,7")
    assert sweep.statuses() == {"grid-0": "done"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slurm", "0"], "--slurm: give the number of workers, at least 1 (got 0)"),
        (["--slurm", "2", "--gpus-per-worker", "-1"], "--gpus-per-worker: must be 0 or more"),
        (["--slurm", "2"], "sbatch not found; run grid-submit on a SLURM login node"),
    ],
)
def test_bad_submissions_exit_2_and_change_nothing(
    new_sweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    before = tree(sweep.queue_dir)
    result = run_cli(cli.submit_command, "grid-submit", ["--queue", str(sweep.queue_dir), *argv])
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert tree(sweep.queue_dir) == before
