"""Faults and bad input: nothing lost, nothing run twice, and the queue always readable.

The long runs are marked `slow`; CI runs them too, each bounded in time. Figures (jobs run,
kills injected, duplicates, losses, bad inputs) are added to build/reliability.json, which
RELIABILITY.md reports.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlagents_grid import cli

from .conftest import ROOT, run_cli, tree, write
from .support.bounds import EXIT_S, REAP_S, REPEATED_TEST_S, SWEEP_S
from .support.sweep import Sweep

QUICK_TRAINER = Path(__file__).resolve().parent / "support" / "quick_trainer.sh"
FIGURES = ROOT / "build" / "reliability.json"
KILL_STORM_S = 100  # fifty kill -9s of workers, each replaced by a new one (20 s, loaded)


@pytest.fixture(scope="session")
def figures() -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    start = time.monotonic()
    yield counts
    counts["suite_seconds"] = round(time.monotonic() - start)
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(dict(counts), indent=1) + "\n")


def assert_valid_and_complete(sweep: Sweep, figures: Counter[str]) -> None:
    """Every run done, no step trained twice, no two trainers of a run at once, none lost.

    A worker killed in the instant between its trainer's exit and its record of `done`
    leaves a finished run that the next worker resumes: that attempt starts at max_steps
    and trains nothing, which is counted apart (`zero_step_resumes`), not as a duplicate.
    """
    report = sweep.report()
    statuses = Counter(run["status"] for run in report["runs"])
    assert statuses == Counter({"done": len(report["runs"])}), statuses
    exits = {e["pid"]: e for e in sweep.exits()}
    duplicates = lost = 0
    for run_id in sweep.queue.sweep.run_ids:
        attempts = sorted(sweep.starts(run_id), key=lambda e: e["time"])
        reached = 0
        last_end = 0.0
        for start in attempts:
            end = exits.get(start["pid"])
            if start["time"] < last_end or start["start_step"] < reached:
                duplicates += 1
            if (
                start["resume"]
                and start["start_step"] == reached
                and end
                and end["step"] == reached
            ):
                figures["zero_step_resumes"] += 1
            if end is not None:
                reached, last_end = end["step"], end["time"]
        finished = [
            exits[a["pid"]] for a in attempts if exits.get(a["pid"], {}).get("reason") == "end"
        ]
        if not finished:
            lost += 1
    figures["duplicates"] += duplicates
    figures["lost"] += lost
    assert duplicates == 0 and lost == 0


@pytest.mark.slow
def test_eight_workers_drain_500_jobs_each_exactly_once(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str]
) -> None:
    sweep = new_sweep(tmp_path, runs=500, ticks=1)
    workers = [
        sweep.start(sweep.command("grid-worker", "--trainer", str(QUICK_TRAINER))) for _ in range(8)
    ]
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    figures["jobs_run"] += 500
    assert set(sweep.statuses().values()) == {"done"}
    starts = Counter(e["run_id"] for e in sweep.starts())
    assert sorted(starts) == sorted(sweep.queue.sweep.run_ids)
    assert set(starts.values()) == {1}
    spans: dict[int, list[tuple[float, float]]] = {}
    ends = {(e["run_id"], e["pid"]): e["time"] for e in sweep.exits()}
    for start in sweep.starts():
        spans.setdefault(start["port"], []).append(
            (start["time"], ends[(start["run_id"], start["pid"])])
        )
    for intervals in spans.values():
        intervals.sort()
        for (_, end), (begin, _) in itertools.pairwise(intervals):
            assert end <= begin, "two runs shared a port at the same time"
    assert len(spans) == 8


@pytest.mark.timeout(REPEATED_TEST_S)
@pytest.mark.slow
def test_fifty_random_kill_9_of_workers_lose_nothing_and_run_nothing_twice(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str]
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=30,
        ticks=15,
        options={"default": {"step_delay": 0.04, "checkpoint_every": 3}},
    )
    rng = random.Random(7)
    live = [sweep.start_worker("--wait") for _ in range(4)]
    kills = 0
    deadline = time.monotonic() + KILL_STORM_S
    while kills < 50 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        victim = live.pop(rng.randrange(len(live)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=REAP_S)
        kills += 1
        live.append(sweep.start_worker("--wait"))
    assert kills == 50
    for worker in live:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    figures["kills_injected"] += kills
    figures["jobs_run"] += 30
    assert_valid_and_complete(sweep, figures)
    # A resume starts at exactly the step its predecessor saved on SIGINT (step 0 too, when
    # the stop came before the first tick); without a recorded exit, never before its start.
    exits = {e["pid"]: e for e in sweep.exits()}
    resumed = 0
    for run_id in sweep.queue.sweep.run_ids:
        starts = sorted(sweep.starts(run_id), key=lambda e: e["time"])
        for before, start in itertools.pairwise(starts):
            if not start["resume"]:
                continue
            resumed += 1
            saved = exits.get(before["pid"])
            if saved is not None:
                assert start["start_step"] == saved["step"], (run_id, before, start)
            else:
                assert start["start_step"] >= before["start_step"], (run_id, before, start)
    assert resumed > 0
    figures["resumes_checked"] += resumed


def faulty(sweep: Sweep, point: str, n: int, tool: str, *args: str) -> subprocess.Popen[str]:
    return sweep.start([sys.executable, "-m", "tests.support.faulty", point, str(n), tool, *args])


@pytest.mark.timeout(REPEATED_TEST_S)
@pytest.mark.slow
@pytest.mark.parametrize("point", ["before", "after"])
def test_a_worker_killed_at_every_state_write_leaves_a_queue_the_next_one_finishes(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str], point: str
) -> None:
    trainer = f"{sys.executable} {ROOT / 'tests' / 'support' / 'fake_trainer.py'}"
    n = 1
    while True:
        sweep = new_sweep(
            tmp_path / f"{point}-{n}",
            runs=2,
            ticks=4,
            options={"default": {"step_delay": 0.05}},
        )
        queue = str(sweep.queue.root)
        victim = faulty(sweep, point, n, "grid-worker", "--queue", queue, "--trainer", trainer)
        code = victim.wait(timeout=SWEEP_S)
        if code == 0:
            break  # n is past the last write: every write has been faulted
        assert code == -signal.SIGKILL, sweep.output(victim)
        figures["kills_injected"] += 1
        # The next worker must read the queue, take over the run and finish the sweep.
        rescue = sweep.start_worker("--wait")
        assert rescue.wait(timeout=SWEEP_S) == 0, sweep.output(rescue)
        assert_valid_and_complete(sweep, figures)
        figures["jobs_run"] += 2
        n += 1
    assert n > 6  # a run is written at least: config, running, pid, final


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before", "after"])
def test_a_monitor_killed_writing_a_kill_file_loses_no_stop(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str], point: str
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=400,
        stops={"3DBall": '{tag: "Environment/Cumulative Reward", step: 2, min: 50}'},
        options={"default": {"step_delay": 0.05, "curve": {"*": [1]}}},
    )
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-0")
    args = ["--queue", str(sweep.queue.root), "--logdir", str(sweep.root / "results")]
    victim = faulty(sweep, point, 1, "grid-monitor", *args)
    assert victim.wait(timeout=EXIT_S) == -signal.SIGKILL
    figures["kills_injected"] += 1
    monitor = sweep.start(sweep.command("grid-monitor", "--logdir", str(sweep.root / "results")))
    assert worker.wait(timeout=EXIT_S) == 0
    assert monitor.wait(timeout=EXIT_S) == 0
    assert sweep.statuses() == {"grid-0": "stopped"}
    assert len(sweep.starts("grid-0")) == 1


def test_a_hanging_trainer_blocks_no_other_worker_and_grid_stop_ends_it(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=4,
        ticks=3,
        options={"default": {"step_delay": 0.02}, "runs": {"grid-0": {"hang": True}}},
    )
    workers = [sweep.start_worker() for _ in range(2)]
    sweep.wait_for(lambda: [sweep.statuses()[f"grid-{i}"] for i in (1, 2, 3)] == ["done"] * 3)
    assert sweep.statuses()["grid-0"] == "running"
    sweep.stop("grid-0", reason="hung")
    for worker in workers:
        assert worker.wait(timeout=EXIT_S) == 0
    assert sweep.statuses()["grid-0"] == "stopped"


def _mount_small_tmpfs(folder: Path) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def test_a_full_disk_is_reported_clearly_and_the_queue_stays_valid(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str]
) -> None:
    disk = tmp_path / "disk"
    mounted = _mount_small_tmpfs(disk)
    try:
        sweep = new_sweep(tmp_path, runs=3, ticks=2, queue_dir=disk / "q")
        if mounted:
            filler = disk / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as handle:
                while True:
                    handle.write(b"x" * 4096)
                    handle.flush()
            victim = sweep.start_worker()
        else:
            trainer = f"{sys.executable} {ROOT / 'tests' / 'support' / 'fake_trainer.py'}"
            args = ["--queue", str(sweep.queue.root), "--trainer", trainer]
            victim = faulty(sweep, "enospc", 2, "grid-worker", *args)
        assert victim.wait(timeout=EXIT_S) == 1
        output = sweep.output(victim)
        assert "cannot write to the queue" in output and "No space left on device" in output
        assert "Traceback" not in output
        report = sweep.report()
        assert all(run["status"] in ("pending", "interrupted") for run in report["runs"])
        if mounted:
            filler.unlink()
        rescue = sweep.start_worker()
        assert rescue.wait(timeout=SWEEP_S) == 0, sweep.output(rescue)
        figures["jobs_run"] += 3
        assert set(sweep.statuses().values()) == {"done"}
    finally:
        if mounted:
            sweep.stop_all()
            subprocess.run(["umount", "-l", str(disk)], check=False)


HOSTILE_CONFIGS: dict[str, tuple[str, str | None]] = {
    "empty file": ("", "top level must be a mapping"),
    "only a comment": ("# nothing\n", "top level must be a mapping"),
    "binary garbage": ("\x00\x01\x02\xff", "not UTF-8 text"),
    "tabs for indentation": ("behaviors:\n\tB: {}\n", "invalid YAML"),
    "behaviors as a list": ("behaviors: [a, b]\n", "no `behaviors:` section"),
    "behavior settings as a string": ("behaviors:\n  B: fast\n", "must be a mapping"),
    "default_settings as a list": (
        "default_settings: [1]\nbehaviors: {B: {}}\n",
        "must be a mapping",
    ),
    "opt_values in a list element": ("behaviors:\n  B:\n    l: [{opt_values: [1, 2]}, 3]\n", None),
    "opt_values inside opt_values": (
        "behaviors:\n  B:\n    x: {opt_values: [{opt_values: [1]}]}\n",
        "cannot be nested inside opt_values",
    ),
    "opt_stop inside opt_values": (
        "behaviors:\n  B:\n    x: {opt_values: [{opt_stop: {tag: a}}]}\n",
        "cannot be nested inside opt_values",
    ),
    "opt_stop deep in hyperparameters": (
        "behaviors:\n  B:\n    hyperparameters: {opt_stop: {tag: a}}\n",
        "opt_stop belongs directly in a behavior",
    ),
    "opt_stop as a string": ("behaviors:\n  B:\n    opt_stop: stop\n", "must be a mapping"),
    "opt_stop min is NaN": (
        "behaviors:\n  B:\n    opt_stop: {tag: a, min: .nan}\n",
        "expected a number",
    ),
    "opt_stop negative step": (
        "behaviors:\n  B:\n    opt_stop: {tag: a, step: -5}\n",
        "whole number",
    ),
    "opt_stop empty list": ("behaviors:\n  B:\n    opt_stop: []\n", "empty list"),
    "boolean key": ("behaviors:\n  B:\n    yes: 1\n", "is not a string"),
    "list as a key": ("behaviors:\n  ? [a, b]\n  : {}\n", "found unhashable key"),
    "unquoted date": ("behaviors:\n  B:\n    x: {opt_values: [2024-01-01]}\n", "quote it"),
    "deeply nested": (
        "behaviors:\n  B:\n    x: " + "[" * 3000 + "]" * 3000 + "\n",
        "nested too deeply",
    ),
    "huge grid": (
        "behaviors:\n  B:\n"
        + "".join(f"    k{i}: {{opt_values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}\n" for i in range(6)),
        "1,000,000 runs",
    ),
    "alias bomb (billion laughs)": (
        "behaviors:\n  B:\n    hyperparameters:\n"
        + "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
        + "    lr: {opt_values: [1, 2]}\n",
        "more than 200,000 YAML nodes",
    ),
    "unicode and spaces in values": (
        "behaviors:\n  Bälle Spiel:\n    note: {opt_values: ['größer als', '日本語']}\n",
        None,
    ),
}


def test_hostile_configs_fail_cleanly_or_plan_correctly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Counter[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for index, (name, (text, expected)) in enumerate(HOSTILE_CONFIGS.items()):
        config = tmp_path / f"config {index} ü.yaml"
        config.write_bytes(
            text.encode("utf-8", "surrogateescape")
            if "\x00" not in text
            else text.encode("latin-1")
        )
        before = tree(tmp_path)
        queue, results = tmp_path / f"q{index}", tmp_path / f"r{index}"
        argv = [
            str(config),
            "--queue",
            str(queue),
            "--results-dir",
            str(results),
            "--run-id",
            f"c{index}",
        ]
        result = run_cli(cli.plan, "grid-plan", argv)
        figures["bad_inputs"] += 1
        outside = {
            p for p in tree(tmp_path) - before if not p.startswith((f"q{index}", f"r{index}"))
        }
        assert outside == set(), name
        assert "Traceback" not in result.err, name
        if expected is None:
            assert result.code == 0, (name, result.err)
            assert queue.is_dir()
        else:
            assert result.code == 2, (name, result.out)
            assert expected in result.err, (name, result.err)
            assert len(result.err.strip().splitlines()) == 1, (name, result.err)
            assert not queue.exists(), name


HOSTILE_ARGUMENTS: dict[str, tuple[list[str], str]] = {
    "run id escaping with ..": (["--run-id", "../../etc"], "may not contain"),
    "run id with a slash": (["--run-id", "a/b"], "may not contain"),
    "run id starting with a dot": (["--run-id", ".hidden"], "may not contain"),
    "run id with a newline": (["--run-id", "a\nb"], "may not contain"),
    "negative base port": (["--base-port", "-1"], "--base-port"),
    "resume as a trainer arg": (["--resume"], "--resume"),
    "zero envs": (["--num-envs=0"], "--num-envs"),
}


def test_hostile_arguments_exit_2_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Counter[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "ok.yaml", "behaviors:\n  B: {}\n")
    for name, (args, expected) in HOSTILE_ARGUMENTS.items():
        before = tree(tmp_path)
        result = run_cli(cli.plan, "grid-plan", ["ok.yaml", *args])
        figures["bad_inputs"] += 1
        assert result.code == 2, (name, result.out)
        assert expected in result.err, (name, result.err)
        assert tree(tmp_path) == before, name
    assert not (tmp_path.parent / "etc").exists()


def test_corrupt_job_and_state_files_are_named_and_the_rest_still_runs(
    new_sweep: Callable[..., Sweep], tmp_path: Path, figures: Counter[str]
) -> None:
    """A broken job file cannot be run; a broken state or final file is set aside and retried.

    An empty final file is what a power cut can leave of a renamed but unsynced write: it
    never proves that a run is final.
    """
    sweep = new_sweep(tmp_path, runs=5, ticks=2)
    queue = sweep.queue
    paths = queue.paths
    paths.job_file("grid-1").write_text("garbage{")
    paths.state_file("grid-2", 0).write_text('{"run_id": "grid-2", "sta')
    paths.kill_file("grid-3").write_bytes(b"\xff\xfe not json")
    paths.final_file("grid-4", 0).write_text("")
    figures["bad_inputs"] += 4
    before = sweep.statuses()
    assert before["grid-2"] == before["grid-4"] == "unreadable"
    shown = {row["run_id"]: row for row in sweep.report()["runs"]}
    assert "the next worker retries the run" in shown["grid-4"]["error"]
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0
    output = sweep.output(worker)
    assert f"grid-1 skipped: {paths.job_file('grid-1')}: unreadable" in output
    for run_id, path in (
        ("grid-2", paths.state_file("grid-2", 0)),
        ("grid-4", paths.final_file("grid-4", 0)),
    ):
        assert (
            f"{run_id}: {path} was unreadable; kept as {path.name}.unreadable, retrying" in output
        )
        assert path.with_name(path.name + ".unreadable").exists()
    statuses = sweep.statuses()
    assert statuses["grid-0"] == statuses["grid-2"] == statuses["grid-4"] == "done"
    assert statuses["grid-3"] == "stopped"
    assert sweep.report()["runs"][3]["stop_reason"] == "unreadable kill file"
    assert statuses["grid-1"] == "unreadable"
    assert {e["run_id"] for e in sweep.events("unreadable-state")} == {"grid-2", "grid-4"}
    table = run_cli(cli.status_command, "grid-status", ["--queue", str(queue.root)])
    assert table.code == 0 and "unreadable" in table.out
    (queue.root / "sweep.json").write_text("{broken")
    for command, prog in ((cli.status_command, "grid-status"), (cli.worker_command, "grid-worker")):
        broken = run_cli(command, prog, ["--queue", str(queue.root)])
        assert broken.code == 2
        assert f"{queue.root / 'sweep.json'}: unreadable" in broken.err
