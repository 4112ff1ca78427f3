"""A sweep's life after planning: grid-plan --extend and grid-retry, alone and under workers."""

from __future__ import annotations

import csv
import json
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlagents_grid import cli
from mlagents_grid.errors import GridError
from mlagents_grid.plan.diff import compare_plans, extension_runs
from mlagents_grid.plan.document import plan_document
from mlagents_grid.plan.seeds import sweep_seeds, with_seeds
from mlagents_grid.queue.folder import Queue
from mlagents_grid.queue.ownership import Claims, Identity
from mlagents_grid.results import hparams
from mlagents_grid.run.worker import IDLE_RECHECK

from .conftest import SEED_3DBALL, SEED_CONFIG_INFO, run_cli, write
from .support.bounds import EXIT_S, SWEEP_S
from .support.sweep import Sweep

TWO_BY_TWO = "engine_settings:\n  time_scale:\n    opt_values: [1, 2]\n"
STOP = '{tag: "Environment/Cumulative Reward", step: 2, min: 50}'


def plan_of(text: str, prefix: str = "3DBall") -> Any:
    return plan_document(yaml.safe_load(textwrap.dedent(text)), "config.yaml", prefix)


def seed_with(old: str, new: str) -> str:
    assert old in SEED_3DBALL
    return SEED_3DBALL.replace(old, new)


BETA = "beta:\n        opt_values: [0.001, 0.002, 0.003]"


def extend_cli(queue: Path, config: Path, *args: str) -> Any:
    return run_cli(cli.plan, "grid-plan", [str(config), "--extend", "--queue", str(queue), *args])


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (but the event log and the lock files) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "events.jsonl" and not p.name.endswith((".lock", ".probe"))
    }


# -- the pure comparison --------------------------------------------------------------
def test_new_values_continue_the_numbering_in_the_new_grids_order() -> None:
    old = plan_of(SEED_3DBALL)
    new = plan_of(seed_with(BETA, "beta:\n        opt_values: [0.001, 0.0015, 0.002, 0.003]"))
    change = compare_plans(old, new, [], None)
    assert [(d.name, added) for d, added in change.added_values] == [("beta", (0.0015,))]
    runs = extension_runs(new, change, (run.assignments for run in old.runs()))
    assert [r.run_id for r in runs] == ["3DBall-9", "3DBall-10", "3DBall-11"]
    assert [r.values["3DBall"] for r in runs] == [
        {"beta": 0.0015, "epsilon": 0.1},
        {"beta": 0.0015, "epsilon": 0.2},
        {"beta": 0.0015, "epsilon": 0.3},
    ]


def test_a_new_swept_key_keeps_the_old_value_for_existing_runs() -> None:
    old = plan_of(SEED_3DBALL)
    new = plan_of(seed_with("lambd: 0.99", "lambd:\n          opt_values: [0.95, 0.99]"))
    change = compare_plans(old, new, [], None)
    assert [(d.name, value) for d, value in change.new_keys] == [("lambd", 0.99)]
    runs = extension_runs(new, change, (run.assignments for run in old.runs()))
    assert len(runs) == 9
    assert {r.values["3DBall"]["lambd"] for r in runs} == {0.95}
    assert runs[0].run_id == "3DBall-9"


@pytest.mark.parametrize(
    ("old_text", "new_text", "message"),
    [
        (
            "max_steps: 500000",
            "max_steps: 600000",
            "--extend: behaviors.3DBall.max_steps changed from 500000 to 600000; only new "
            "opt_values, new swept keys and opt_stop may change",
        ),
        (
            BETA,
            "beta:\n        opt_values: [0.001, 0.003]",
            "behaviors.3DBall.hyperparameters.beta changed from {opt_values: [0.001, 0.002, "
            "0.003]} to {opt_values: [0.001, 0.003]} (removed: 0.002)",
        ),
        (
            BETA,
            "beta: 0.001",
            "behaviors.3DBall.hyperparameters.beta changed from {opt_values: [0.001, 0.002, "
            "0.003]} to 0.001 (no longer swept)",
        ),
        (
            "lambd: 0.99",
            "lambd:\n          opt_values: [0.9, 0.95]",
            "behaviors.3DBall.hyperparameters.lambd changed from 0.99 to "
            "{opt_values: [0.9, 0.95]} (a new swept key must keep its old value 0.99",
        ),
        (
            "lambd: 0.99",
            "lambd: 0.99\n      gamma:\n        opt_values: [0.9]",
            "behaviors.3DBall.hyperparameters.gamma changed from (not set) to",
        ),
        (
            "    keep_checkpoints: 5\n",
            "",
            "behaviors.3DBall.keep_checkpoints changed from 5 to (not set)",
        ),
    ],
)
def test_refused_changes_name_the_first_difference(
    old_text: str, new_text: str, message: str
) -> None:
    old = plan_of(SEED_3DBALL)
    new = plan_of(seed_with(old_text, new_text))
    with pytest.raises(GridError) as info:
        compare_plans(old, new, [], None)
    assert message in str(info.value)


def test_opt_stop_may_change_and_trainer_arguments_may_not() -> None:
    old = plan_of(SEED_3DBALL)
    stop = "    opt_stop: {tag: Environment/Cumulative Reward, step: 10, min: 1}\n"
    new = plan_of(SEED_3DBALL + stop)
    change = compare_plans(old, new, ["--env=a"], ["--env=a"])
    assert change.conditions_changed and not change.added_values and not change.new_keys
    assert extension_runs(new, change, (r.assignments for r in old.runs())) == []
    with pytest.raises(GridError, match="trainer arguments changed from --env=a to --env=b"):
        compare_plans(old, new, ["--env=a"], ["--env=b"])


# -- grid-plan --extend on a queue --------------------------------------------------
def test_extend_3x3_to_4x3_appends_runs_and_leaves_the_old_ones_byte_identical(
    workdir: Path,
) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    queue_dir = workdir / "sweeps" / "3DBall"
    before = snapshot(queue_dir)
    grown = write(
        workdir / "grown.yaml",
        seed_with(BETA, "beta:\n        opt_values: [0.001, 0.002, 0.003, 0.004]"),
    )
    dry = extend_cli(queue_dir, grown, "--dry-run")
    assert dry.code == 0, dry.err
    assert "3DBall-9 - 3DBall - beta: 0.004 - epsilon: 0.1" in dry.out
    assert "Would add 3 runs (3DBall-9 ... 3DBall-11)" in dry.out
    assert snapshot(queue_dir) == before
    result = extend_cli(queue_dir, grown)
    assert result.code == 0, result.err
    after = snapshot(queue_dir)
    for name, data in before.items():
        if name not in ("sweep.json", "config_info.txt"):
            assert after[name] == data, name
    assert after["config_info.txt"].decode() == SEED_CONFIG_INFO + (
        "3DBall-9 - 3DBall - beta: 0.004 - epsilon: 0.1\n"
        "3DBall-10 - 3DBall - beta: 0.004 - epsilon: 0.2\n"
        "3DBall-11 - 3DBall - beta: 0.004 - epsilon: 0.3\n"
    )
    queue = Queue(queue_dir)
    assert queue.sweep.run_ids == [f"3DBall-{i}" for i in range(12)]
    assert queue.sweep.generation == 1
    assert [e["run_id"] for e in queue.events() if e["event"] == "extended"] == [
        "3DBall-9",
        "3DBall-10",
        "3DBall-11",
    ]
    assert queue.job("3DBall-10").values == {"3DBall": {"beta": 0.004, "epsilon": 0.2}}
    assert not queue.paths.extension_dir.exists()
    # The same config again adds nothing and writes nothing.
    again = extend_cli(queue_dir, grown)
    assert again.code == 0 and "Nothing to add" in again.out
    assert snapshot(queue_dir) == after


NESTED_DEFAULT = """\
default_settings:
  hyperparameters:
    learning_rate: {opt_values: [0.001, 0.002]}
    beta: 0.01
"""


def test_extend_a_nested_default_sweep_into_behaviors_without_that_block(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """default_settings sweeps hyperparameters.learning_rate and the behavior has no
    `hyperparameters:` of its own (issue 22, item 4): the unchanged config adds nothing, a
    new value and a new swept default are added, and the fake trainer trains them."""
    sweep = new_sweep(tmp_path, runs=1, ticks=2, extra=NESTED_DEFAULT)
    assert sweep.queue.sweep.run_ids == ["grid-0", "grid-1"]
    worker = sweep.start_worker()
    assert worker.wait(timeout=60) == 0, sweep.output(worker)
    config = tmp_path / "grid.yaml"
    before = snapshot(sweep.queue_dir)
    for args in (["--dry-run"], []):
        same = extend_cli(sweep.queue_dir, config, *args)
        assert same.code == 0, same.err
        assert same.out.startswith("Nothing to add to "), same.out
    assert snapshot(sweep.queue_dir) == before
    text = config.read_text()
    write(
        config,
        text.replace("[0.001, 0.002]", "[0.001, 0.002, 0.003]").replace(
            "beta: 0.01", "beta: {opt_values: [0.01, 0.02]}"
        ),
    )
    dry = extend_cli(sweep.queue_dir, config, "--dry-run")
    assert dry.code == 0, dry.err
    assert "Would add 4 runs (grid-2 ... grid-5)" in dry.out
    assert snapshot(sweep.queue_dir) == before
    grown = extend_cli(sweep.queue_dir, config)
    assert grown.code == 0, grown.err
    assert "3DBall.learning_rate + 0.003" in grown.out
    assert "new swept key: 3DBall.beta (existing runs keep 0.01)" in grown.out
    worker = sweep.start_worker()
    assert worker.wait(timeout=60) == 0, sweep.output(worker)
    assert sorted(e["run_id"] for e in sweep.starts()) == [f"grid-{i}" for i in range(6)]
    trained = {
        run_id: yaml.safe_load(sweep.queue.paths.config_file(run_id).read_text())
        for run_id in sweep.queue.sweep.run_ids
    }
    hyper = {
        run_id: (c["behaviors"]["3DBall"]["hyperparameters"], c["default_settings"])
        for run_id, c in trained.items()
    }
    assert hyper["grid-0"] == ({"learning_rate": 0.001}, {"hyperparameters": {"beta": 0.01}})
    assert hyper["grid-2"] == (
        {"learning_rate": 0.001, "beta": 0.02},
        {"hyperparameters": {"beta": 0.01}},
    )
    assert hyper["grid-5"][0] == {"learning_rate": 0.003, "beta": 0.02}
    assert_consistent(sweep.queue)


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        ((), seed_with("max_steps: 500000", "max_steps: 600000"), "max_steps changed from"),
        ((), seed_with(BETA, "beta:\n        opt_values: [0.001]"), "(removed: 0.002, 0.003)"),
        (("--no-graphics",), SEED_3DBALL, "trainer arguments changed from (none) to"),
        (("--run-id", "other"), SEED_3DBALL, "--run-id other: the sweep's run ids start with"),
        (("--force",), SEED_3DBALL, "--force: the sweep was planned without it"),
        (("--results-dir", "elsewhere"), SEED_3DBALL, "--results-dir changed from"),
        (("--base-port", "6000"), SEED_3DBALL, "--base-port changed from 5005 to 6000"),
    ],
)
def test_refused_extensions_exit_2_with_one_line_and_write_nothing(
    workdir: Path, args: tuple[str, ...], text: str, message: str
) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    queue_dir = workdir / "sweeps" / "3DBall"
    before = snapshot(queue_dir)
    changed = write(workdir / "changed.yaml", text)
    result = extend_cli(queue_dir, changed, *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grid-plan: "), result.err
    assert message in lines[0]
    assert snapshot(queue_dir) == before


def test_extend_of_a_missing_sweep_says_so(workdir: Path) -> None:
    config = write(workdir / "3DBall.yaml", SEED_3DBALL)
    result = extend_cli(workdir / "nowhere", config)
    assert result.code == 2
    assert "no sweep here" in result.err
    assert not (workdir / "nowhere").exists()


def test_a_new_swept_key_and_opt_stop_rewrite_the_job_files_of_runs_not_final(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=2, extra="engine_settings:\n  time_scale: 1\n")
    sweep.stop("grid-1")  # final before the extension: keeps its conditions
    final_job = sweep.queue.paths.job_file("grid-1").read_bytes()
    text = (tmp_path / "grid.yaml").read_text()
    grown = text.replace("time_scale: 1", "time_scale:\n    opt_values: [1, 3]").replace(
        "summary_freq: 1\n", f"summary_freq: 1\n    opt_stop: {STOP}\n"
    )
    config = write(tmp_path / "grown.yaml", grown)
    result = extend_cli(sweep.queue_dir, config)
    assert result.code == 0, result.err
    assert "new swept key: engine_settings.time_scale (existing runs keep 1)" in result.out
    assert "opt_stop changed" in result.out
    queue = Queue(sweep.queue_dir)
    assert queue.sweep.run_ids == ["grid-0", "grid-1", "grid-2", "grid-3"]
    assert queue.job("grid-0").values["engine_settings"] == {"time_scale": 1}
    assert queue.job("grid-0").conditions and queue.job("grid-2").conditions
    assert queue.job("grid-3").values == {
        "engine_settings": {"time_scale": 3},
        "environment_parameters": {"index": 1},
    }
    grid1 = queue.job("grid-1")
    assert grid1.values["engine_settings"] == {"time_scale": 1} and not grid1.conditions
    assert final_job != queue.paths.job_file("grid-1").read_bytes()
    info = queue.paths.config_info.read_text().splitlines()
    assert info[0] == "grid-0 - environment_parameters - index: 0"
    assert info[2] == "grid-2 - engine_settings - time_scale: 3 - environment_parameters - index: 0"
    assert_consistent(queue)
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    configs = {
        r: yaml.safe_load(queue.paths.config_file(r).read_text()) for r in ("grid-0", "grid-3")
    }
    assert configs["grid-0"]["engine_settings"]["time_scale"] == 1
    assert configs["grid-3"]["engine_settings"]["time_scale"] == 3


def test_two_extends_at_once_one_wins_and_the_other_is_refused(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    for attempt in range(3):
        root = tmp_path / str(attempt)
        sweep = new_sweep(root, runs=2, extra=TWO_BY_TWO)
        text = (root / "grid.yaml").read_text()
        configs = [
            write(root / "a.yaml", text.replace("[1, 2]", "[1, 2, 3]")),
            write(root / "b.yaml", text.replace("[1, 2]", "[1, 2, 4, 5]")),
        ]
        procs = [
            sweep.start(sweep.command("grid-plan", str(config), "--extend")) for config in configs
        ]
        codes = [proc.wait(timeout=EXIT_S) for proc in procs]
        assert sorted(codes) == [0, 2], [sweep.output(p) for p in procs]
        winner = codes.index(0)
        loser = procs[1 - winner]
        assert "grid-plan: " in sweep.output(loser)
        queue = Queue(sweep.queue_dir)
        expected = 6 if winner == 0 else 8
        assert queue.sweep.run_ids == [f"grid-{i}" for i in range(expected)]
        assert_consistent(queue)


def assert_consistent(queue: Queue) -> None:
    """sweep.json, the job files and config_info.txt tell one sweep."""
    assert not queue.paths.extension_dir.exists()
    run_ids = queue.sweep.run_ids
    lines = queue.paths.config_info.read_text().splitlines()
    assert [line.split(" - ")[0] for line in lines] == run_ids
    conditions = queue.sweep.conditions
    final = set(queue.final_ids())
    for run_id in run_ids:
        job = queue.job(run_id)
        if run_id not in final and conditions is not None:
            assert [c.to_dict() for c in job.conditions] == conditions, run_id
    jobs = {p.stem for p in (queue.root / "jobs").glob("*.json")}
    assert set(run_ids) <= jobs


# -- under running workers ------------------------------------------------------------
def test_extend_2x2_to_3x2_while_two_waiting_workers_run(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    # grid-3 trains until the test has extended the sweep: one worker busy, the other idle.
    gate = tmp_path / "extended"
    sweep = new_sweep(
        tmp_path,
        runs=2,
        ticks=10,
        extra=TWO_BY_TWO,
        options={
            "default": {"step_delay": 0.02},
            "runs": {"grid-3": {"gate_at": {"5": str(gate)}}},
        },
    )
    workers = [sweep.start_worker("--wait") for _ in range(2)]
    queue = sweep.queue
    ended = ("grid-0", "grid-1", "grid-2")
    # Final, and done with: a run's worker keeps its score and final HParams session just
    # after its final state, and those files are part of what the extension must not touch.
    sweep.wait_for(
        lambda: (
            set(ended) <= set(queue.final_ids())
            and all(queue.paths.score_file(r).exists() for r in ended)
        )
    )
    sweep.wait_for_training("grid-3")
    assert "grid-3" not in queue.final_ids()
    before = snapshot(sweep.queue_dir)
    results_before = snapshot(tmp_path / "results")
    text = (tmp_path / "grid.yaml").read_text()
    grown = write(tmp_path / "grown.yaml", text.replace("[1, 2]", "[1, 2, 3]"))
    extended_at = time.time()
    result = extend_cli(sweep.queue_dir, grown)
    assert result.code == 0, result.err
    assert "2 new runs (grid-4 ... grid-5)" in result.out
    # The idle worker is woken by the new sweep.json, not by its 30 s recheck.
    sweep.wait_for(lambda: sweep.starts("grid-4"))
    assert sweep.starts("grid-4")[0]["time"] - extended_at < IDLE_RECHECK / 3
    gate.touch()
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert set(sweep.statuses().values()) == {"done"}
    assert sorted(e["run_id"] for e in sweep.starts()) == [f"grid-{i}" for i in range(6)]
    after = snapshot(sweep.queue_dir)
    refs = queue.snapshot()
    for run_id in ("grid-0", "grid-1", "grid-2"):
        final = str(queue.state_path(refs[run_id]).relative_to(sweep.queue_dir))
        for name in (f"jobs/{run_id}.json", final, f"logs/{run_id}.log"):
            assert after[name] == before[name], name
    assert after["jobs/grid-3.json"] == before["jobs/grid-3.json"]
    results_after = snapshot(tmp_path / "results")
    for name, data in results_before.items():
        if not name.startswith("grid-3/"):
            assert results_after[name] == data, name
    assert queue.job("grid-4").values == {
        "engine_settings": {"time_scale": 3},
        "environment_parameters": {"index": 0},
    }
    assert_consistent(queue)


# -- grid-retry -----------------------------------------------------------------------
def retry(sweep: Sweep, *args: str) -> Any:
    return run_cli(cli.retry_command, "grid-retry", ["--queue", str(sweep.queue_dir), *args])


def test_retry_of_a_failed_run_starts_its_failures_over_and_resumes_from_its_checkpoint(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=6,
        options={
            "default": {"crash": 3, "crash_after": 3, "crash_times": 1, "checkpoint_every": 1}
        },
        plan_args=("--max-attempts", "1"),
    )
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "failed"}
    result = retry(sweep, "--failed", "--reason", "fixed the crash")
    assert result.code == 0, result.err
    assert "grid-0: retried (was failed (exit code 3); retry 1)" in result.out
    state = sweep.queue.state_of("grid-0")
    assert (state.status, state.failures, state.retries) == ("pending", 0, 1)
    event = sweep.events("retried")[0]
    assert event["reason"] == "fixed the crash" and event["previous"] == "failed"
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0, sweep.output(again)
    starts = sweep.starts("grid-0")
    assert len(starts) == 2
    assert starts[1]["resume"] is True and starts[1]["start_step"] == 2
    report = sweep.report()
    row = report["runs"][0]
    assert (row["status"], row["retries"], row["previous"]) == (
        "done",
        1,
        "failed (exit code 3)",
    )
    table = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir)])
    assert "retried once, last failed (exit code 3)" in table.out


def test_retry_of_a_stopped_run_removes_its_kill_file_and_resumes_it(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=200, options={"default": {"step_delay": 0.03}})
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-0")
    # Refused while it trains, and for a pending run: nothing changes.
    before = snapshot(sweep.queue_dir)
    for args, message in (
        (("grid-0",), "grid-0 is running; only failed, stopped and paused runs can be retried"),
        (("grid-1",), "grid-1 is pending"),
        (("grid-9",), "no run 'grid-9' in this sweep"),
        ((), "--failed / --stopped"),
    ):
        refused = retry(sweep, *args)
        assert refused.code == 2, refused
        assert len(refused.err.strip().splitlines()) == 1 and message in refused.err
    assert snapshot(sweep.queue_dir).keys() == before.keys()
    assert sweep.queue.state_of("grid-0").status == "running"
    sweep.stop("grid-0", "grid-1", reason="too slow")
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "stopped", "grid-1": "stopped"}
    saved = json.loads((tmp_path / "results" / "grid-0" / "3DBall" / "checkpoint.pt").read_text())[
        "step"
    ]
    assert 0 < saved < 200
    result = retry(sweep, "grid-0")
    assert result.code == 0, result.err
    assert not sweep.queue.paths.kill_file("grid-0").exists()
    assert sweep.queue.paths.kill_file("grid-1").exists()
    assert sweep.statuses() == {"grid-0": "pending", "grid-1": "stopped"}
    again = sweep.start_worker()
    assert again.wait(timeout=SWEEP_S) == 0, sweep.output(again)
    starts = sweep.starts("grid-0")
    assert len(starts) == 2 and starts[1]["resume"] is True
    assert starts[1]["start_step"] == saved
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "stopped"}
    assert not sweep.starts("grid-1")
    # done is not retryable
    done = retry(sweep, "grid-0", "--stopped")
    assert done.code == 2 and "grid-0 is done" in done.err
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "stopped"}


def test_a_retried_stopped_run_is_checked_against_its_opt_stop_again(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=400,
        stops={"3DBall": STOP},
        options={"default": {"step_delay": 0.05, "curve": {"*": [1]}}},
    )
    logdir = str(tmp_path / "results")
    for round_ in range(2):
        worker = sweep.start_worker()
        monitor = sweep.start(sweep.command("grid-monitor", "--logdir", logdir))
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
        assert monitor.wait(timeout=EXIT_S) == 0, sweep.output(monitor)
        assert sweep.statuses() == {"grid-0": "stopped"}
        if round_ == 0:
            assert retry(sweep, "--stopped").code == 0
    # The worker's events, not the trainer's own record: the monitor may stop the resumed
    # trainer (its old points already meet the condition) before it has written anything.
    started = sweep.events("started")
    assert len(started) == 2 and started[1]["mode"] == "--resume"
    assert len(sweep.events("stopped")) == 2
    assert sweep.queue.state_of("grid-0").retries == 1


def test_retrying_a_run_opt_stop_stopped_warns_and_a_relaxed_opt_stop_lets_it_train(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """Issue 22, item 10: the retry warns that the condition still holds and says how to
    relax it; after --extend with a relaxed opt_stop, the retried run takes it and trains
    to the end under a monitor that ran all along."""
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=60,
        stops={"3DBall": STOP},
        options={"default": {"step_delay": 0.05, "curve": {"*": [1]}}},
    )
    logdir = str(tmp_path / "results")
    monitor = sweep.start(sweep.command("grid-monitor", "--logdir", logdir, "--forever"))
    worker = sweep.start_worker()
    assert worker.wait(timeout=60) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "stopped"}
    warned = retry(sweep, "grid-0")
    assert warned.code == 0, warned.err
    lines = warned.err.strip().splitlines()
    assert len(lines) == 1, warned.err
    assert lines[0].startswith("grid-retry: warning: grid-0 still meets its opt_stop (")
    assert f"grid-plan {tmp_path / 'grid.yaml'} --extend first" in lines[0]
    worker = sweep.start_worker()  # a --wait worker would have left with every run final
    assert worker.wait(timeout=60) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "stopped"}
    assert len(sweep.events("stopped")) == 2  # stopped again at once, as it warned
    config = tmp_path / "grid.yaml"
    write(config, config.read_text().replace("min: 50", "min: 0.5"))
    relaxed = extend_cli(sweep.queue_dir, config)
    assert relaxed.code == 0, relaxed.err
    assert sweep.queue.job("grid-0").conditions[0].min == 50  # final: keeps its own
    again = retry(sweep, "grid-0")
    assert again.code == 0 and again.err == "", again.err
    assert sweep.queue.job("grid-0").conditions[0].min == 0.5  # retried: the sweep's
    worker = sweep.start_worker()
    assert worker.wait(timeout=90) == 0, sweep.output(worker)
    assert sweep.statuses() == {"grid-0": "done"}
    assert len(sweep.events("stopped")) == 2
    monitor.send_signal(signal.SIGINT)
    monitor.wait(timeout=30)


@pytest.mark.parametrize("point", ["before", "after"])
def test_a_retry_killed_at_its_write_leaves_the_run_final_or_retried(
    new_sweep: Callable[..., Sweep], tmp_path: Path, point: str
) -> None:
    sweep = new_sweep(tmp_path, runs=1, ticks=2)
    sweep.stop("grid-0")
    assert sweep.statuses() == {"grid-0": "stopped"}
    victim = sweep.start(
        [sys.executable, "-m", "tests.support.faulty", point, "1", "grid-retry"]
        + ["--queue", str(sweep.queue_dir), "grid-0"]
    )
    assert victim.wait(timeout=EXIT_S) == -signal.SIGKILL, sweep.output(victim)
    if point == "before":  # killed before its one state write: the run is as it was
        assert sweep.statuses() == {"grid-0": "stopped"}
        assert retry(sweep, "grid-0").code == 0
    # Killed after it: the retry took effect, its kill file gone first.
    assert sweep.statuses() == {"grid-0": "pending"}
    assert not sweep.queue.paths.kill_file("grid-0").exists()
    assert sweep.queue.state_of("grid-0").retries == 1
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0
    assert sweep.statuses() == {"grid-0": "done"}


# -- crashes of --extend ------------------------------------------------------------
def test_an_extend_killed_at_every_write_leaves_the_old_sweep_or_the_new_one(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    checked = 0
    for point in ("before", "after"):
        n = 1
        while True:
            root = tmp_path / f"{point}-{n}"
            sweep = new_sweep(root, runs=2, ticks=2, extra=TWO_BY_TWO)
            text = (root / "grid.yaml").read_text()
            grown = text.replace("[1, 2]", "[1, 2, 3]").replace(
                "summary_freq: 1\n", f"summary_freq: 1\n    opt_stop: {STOP}\n"
            )
            config = write(root / "grown.yaml", grown)
            old_ids = [f"grid-{i}" for i in range(4)]
            new_ids = [f"grid-{i}" for i in range(6)]
            victim = sweep.start(
                [sys.executable, "-m", "tests.support.faulty", point, str(n), "grid-plan"]
                + [str(config), "--extend", "--queue", str(sweep.queue_dir)]
            )
            code = victim.wait(timeout=EXIT_S)
            queue = Queue(sweep.queue_dir)
            if code == 0:
                assert queue.sweep.run_ids == new_ids
                assert_consistent(queue)
                break
            assert code == -signal.SIGKILL, sweep.output(victim)
            # Workers see the old run ids or the new ones, each with its job file.
            assert queue.sweep.run_ids in (old_ids, new_ids)
            for run_id in queue.sweep.run_ids:
                queue.job(run_id)
            # What a worker does first: finish a committed extension or drop a staged one.
            queue.finish_left_extension(Claims(Identity.this(), queue.sweep.lease))
            assert queue.sweep.run_ids in (old_ids, new_ids)
            assert_consistent(queue)
            # A following --extend completes it, and the workers train every run once.
            result = extend_cli(sweep.queue_dir, config)
            assert result.code == 0, result.err
            assert queue.sweep.run_ids == new_ids
            assert_consistent(queue)
            checked += 1
            n += 1
        if point == "after":
            worker = sweep.start_worker()
            assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
            assert sorted(e["run_id"] for e in sweep.starts()) == sorted(new_ids)
    assert checked >= 8


def test_a_worker_finishes_an_extension_its_writer_left_committed(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=2, extra=TWO_BY_TWO)
    text = (tmp_path / "grid.yaml").read_text()
    config = write(tmp_path / "grown.yaml", text.replace("[1, 2]", "[1, 2, 3]"))
    # Killed right after the manifest (its first rename): committed, nothing applied yet.
    victim = sweep.start(
        [sys.executable, "-m", "tests.support.faulty", "after", "1", "grid-plan"]
        + [str(config), "--extend", "--queue", str(sweep.queue_dir)]
    )
    assert victim.wait(timeout=EXIT_S) == -signal.SIGKILL
    assert sweep.queue.sweep.run_ids == [f"grid-{i}" for i in range(4)]
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert sorted(e["run_id"] for e in sweep.starts()) == [f"grid-{i}" for i in range(6)]
    assert_consistent(sweep.queue)
    assert len(sweep.events("extended")) == 2


def test_an_extension_killed_past_its_commit_is_not_offered_again_and_finished_visibly(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """Issue 22, item 12: the committed runs are not offered again, and the roll forward is
    said in one line before the comparison."""
    sweep = new_sweep(tmp_path, runs=2, ticks=2, extra=TWO_BY_TWO)
    text = (tmp_path / "grid.yaml").read_text()
    grown = write(tmp_path / "grown.yaml", text.replace("[1, 2]", "[1, 2, 3]"))
    more = write(tmp_path / "more.yaml", text.replace("[1, 2]", "[1, 2, 3, 4]"))
    victim = sweep.start(
        [sys.executable, "-m", "tests.support.faulty", "after", "1", "grid-plan"]
        + [str(grown), "--extend", "--queue", str(sweep.queue_dir)]
    )
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert sweep.queue.sweep.run_ids == [f"grid-{i}" for i in range(4)]  # committed only
    before = snapshot(sweep.queue_dir)
    half = "(generation 1: 2 new runs (grid-4 ... grid-5))"
    same = extend_cli(sweep.queue_dir, grown, "--dry-run")
    assert same.code == 0, same.err
    assert same.out.splitlines() == [
        f"An earlier --extend was cut short after its commit {half}; the next --extend, "
        "grid-retry or worker finishes it; compared with it applied",
        f"Nothing to add to {sweep.queue_dir}: the config plans no new run and no change; "
        "dry run: nothing written",
    ]
    bigger = extend_cli(sweep.queue_dir, more, "--dry-run")
    assert bigger.code == 0, bigger.err
    assert "Would add 2 runs (grid-6 ... grid-7)" in bigger.out
    assert "grid-4 -" not in bigger.out and "grid-6 -" in bigger.out
    assert snapshot(sweep.queue_dir) == before  # a dry run writes nothing, not even that
    done = extend_cli(sweep.queue_dir, more)
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == f"Finished an earlier --extend cut short after its commit {half}"
    assert lines[1] == f"Extended {sweep.queue_dir}: 2 new runs (grid-6 ... grid-7)"
    assert sweep.queue.sweep.run_ids == [f"grid-{i}" for i in range(8)]
    assert sweep.queue.sweep.generation == 2
    assert_consistent(sweep.queue)
    worker = sweep.start_worker()
    assert worker.wait(timeout=60) == 0, sweep.output(worker)
    assert sorted(e["run_id"] for e in sweep.starts()) == sorted(f"grid-{i}" for i in range(8))


def test_a_new_opt_stop_reaches_the_running_monitor_and_stops_a_running_run(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        ticks=400,
        options={"default": {"step_delay": 0.05, "curve": {"*": [1]}}},
    )
    worker = sweep.start_worker()
    monitor = sweep.start(
        sweep.command("grid-monitor", "--logdir", str(tmp_path / "results"), "--interval", "1")
    )
    sweep.wait_for_training("grid-0")
    sweep.wait_for(lambda: "monitor watching" in sweep.output(monitor))  # it read the job
    assert sweep.queue.state_of("grid-0").status == "running"
    text = (tmp_path / "grid.yaml").read_text()
    grown = text.replace("summary_freq: 1\n", f"summary_freq: 1\n    opt_stop: {STOP}\n")
    result = extend_cli(sweep.queue_dir, write(tmp_path / "grown.yaml", grown))
    assert result.code == 0, result.err
    assert "job files rewritten: 1" in result.out
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert monitor.wait(timeout=EXIT_S) == 0, sweep.output(monitor)
    assert sweep.statuses() == {"grid-0": "stopped"}
    assert "Environment/Cumulative Reward: 1 < 50" in sweep.report()["runs"][0]["stop_reason"]


# -- seeds and --extend -------------------------------------------------------------
def test_extension_runs_give_new_points_every_seed_and_existing_points_the_added_ones() -> None:
    old = with_seeds(plan_of(SEED_3DBALL), 2)
    grown = seed_with(BETA, "beta:\n        opt_values: [0.001, 0.002, 0.003, 0.004]")
    same = with_seeds(plan_of(grown), 2)
    change = compare_plans(old, same, [], None)
    runs = extension_runs(same, change, (r.assignments for r in old.runs()), old_seeds=2)
    assert [r.run_id for r in runs] == [f"3DBall-{p}-s{k}" for p in (9, 10, 11) for k in (0, 1)]
    assert [(r.index, r.point, r.seed) for r in runs] == [
        (18 + i, 9 + i // 2, i % 2) for i in range(6)
    ]
    assert runs[1].assignments[-1] == (("env_settings", "seed"), 1)
    # Three seeds: seed 2 of each of the 9 existing points first, then the new points.
    more = with_seeds(plan_of(grown), 3)
    runs = extension_runs(more, change, (r.assignments for r in old.runs()), old_seeds=2)
    assert [r.run_id for r in runs] == [f"3DBall-{p}-s2" for p in range(9)] + [
        f"3DBall-{p}-s{k}" for p in (9, 10, 11) for k in range(3)
    ]
    assert runs[4].values == next(r for r in old.runs() if r.point == 4).values
    assert [r.index for r in runs] == list(range(18, 18 + 18))


def test_extend_of_a_seeded_sweep_keeps_its_seeds_and_numbers_new_points_on(
    workdir: Path,
) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml", "--seeds", "2"]).code == 0
    queue_dir = workdir / "sweeps" / "3DBall"
    before = snapshot(queue_dir)
    grown = write(
        workdir / "grown.yaml",
        seed_with(BETA, "beta:\n        opt_values: [0.001, 0.002, 0.003, 0.004]"),
    )
    result = extend_cli(queue_dir, grown)  # no --seeds: the sweep's 2
    assert result.code == 0, result.err
    assert "6 new runs (3DBall-9-s0 ... 3DBall-11-s1)" in result.out
    after = snapshot(queue_dir)
    for name, data in before.items():
        if name not in ("sweep.json", "config_info.txt"):
            assert after[name] == data, name
    queue = Queue(queue_dir)
    assert queue.sweep.seeds == 2
    assert queue.sweep.run_ids[18:] == [f"3DBall-{p}-s{k}" for p in (9, 10, 11) for k in (0, 1)]
    lines = queue.paths.config_info.read_text().splitlines()
    assert lines[18:20] == [
        "3DBall-9-s0 - 3DBall - beta: 0.004 - epsilon: 0.1 - seed: 0",
        "3DBall-9-s1 - 3DBall - beta: 0.004 - epsilon: 0.1 - seed: 1",
    ]
    raw = json.loads(queue.paths.job_file("3DBall-10-s1").read_text())
    assert (raw["index"], raw["point"], raw["seed"]) == (21, 10, 1)
    config = yaml.safe_load(queue.render_config(queue.job("3DBall-10-s1")))
    assert config["env_settings"]["seed"] == 1
    assert_consistent(queue)
    # Adding a seed: seed 2 for every one of the 12 points, nothing else changes.
    grown_again = snapshot(queue_dir)
    result = extend_cli(queue_dir, grown, "--seeds", "3")
    assert result.code == 0, result.err
    assert "seeds: 2 -> 3 per grid point (seed 2 added to each of the 12 existing points)" in (
        result.out
    )
    assert queue.sweep.seeds == 3
    assert queue.sweep.run_ids[24:] == [f"3DBall-{p}-s2" for p in range(12)]
    assert queue.job("3DBall-11-s2").values == queue.job("3DBall-11-s0").values
    assert queue.job("3DBall-11-s2").seed == 2 and queue.job("3DBall-11-s2").point == 11
    for name, data in grown_again.items():
        if name not in ("sweep.json", "config_info.txt"):
            assert snapshot(queue_dir)[name] == data, name
    assert_consistent(queue)


def test_one_seed_sweeps_gain_seeds_and_fewer_seeds_are_refused(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", "env_settings:\n  seed: 7\n" + SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    queue_dir = workdir / "sweeps" / "3DBall"
    before = snapshot(queue_dir)
    result = extend_cli(queue_dir, workdir / "3DBall.yaml", "--seeds", "3")
    assert result.code == 0, result.err
    queue = Queue(queue_dir)
    after = snapshot(queue_dir)
    for name, data in before.items():
        if name not in ("sweep.json", "config_info.txt"):
            assert after[name] == data, name  # the existing runs' job files stay unseeded
    assert queue.sweep.seeds == 3
    assert queue.sweep.run_ids[:9] == [f"3DBall-{p}" for p in range(9)]
    assert queue.sweep.run_ids[9:] == [f"3DBall-{p}-s{k}" for p in range(9) for k in (1, 2)]
    lines = queue.paths.config_info.read_text().splitlines()
    assert lines[:9] == before["config_info.txt"].decode().splitlines()
    assert lines[9] == "3DBall-0-s1 - 3DBall - beta: 0.001 - epsilon: 0.1 - seed: 8"
    rows = {r["run_id"]: (r["point"], r["seed"]) for r in status_rows(queue)}
    assert rows["3DBall-4"] == (4, 7) and rows["3DBall-4-s2"] == (4, 9)
    assert_consistent(queue)
    grown = snapshot(queue_dir)
    for args in (("--seeds", "2"), ("--seeds", "1")):
        refused = extend_cli(queue_dir, workdir / "3DBall.yaml", *args)
        assert refused.code == 2
        lines = refused.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"grid-plan: --seeds {args[1]}: "), lines
        assert "the sweep trains 3 seeds per grid point" in lines[0]
        assert snapshot(queue_dir) == grown
    again = extend_cli(queue_dir, workdir / "3DBall.yaml", "--seeds", "3")
    assert again.code == 0 and "Nothing to add" in again.out
    assert snapshot(queue_dir) == grown


def status_rows(queue: Queue) -> list[dict[str, Any]]:
    result = run_cli(cli.status_command, "grid-status", ["--queue", str(queue.root), "--json"])
    assert result.code == 0, result.err
    return list(json.loads(result.out)["runs"])


def test_extended_points_and_added_seeds_are_ranked_and_shown(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """A one-seed sweep of 2 points, grown to 3 points x 3 seeds and trained: grid-report
    groups the unsuffixed runs with their added seeds, and HParams lists every run."""
    curves = {0: [1.0, 2.0, 3.0], 1: [5.0, 6.0, 7.0], 2: [3.0, 4.0, 5.0]}
    names = {0: ["grid-0", "grid-0-s1", "grid-0-s2"], 1: ["grid-1", "grid-1-s1", "grid-1-s2"]}
    names[2] = ["grid-2-s0", "grid-2-s1", "grid-2-s2"]
    runs = {
        name: {"curve": {"*": [curves[p][k]]}} for p in names for k, name in enumerate(names[p])
    }
    sweep = new_sweep(tmp_path, runs=2, ticks=2, options={"default": {}, "runs": runs})
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    text = (tmp_path / "grid.yaml").read_text()
    grown = write(tmp_path / "grown.yaml", text.replace("[0, 1]", "[0, 1, 2]"))
    result = extend_cli(sweep.queue_dir, grown, "--seeds", "3")
    assert result.code == 0, result.err
    assert "7 new runs (grid-0-s1 ... grid-2-s2)" in result.out
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    assert set(sweep.statuses().values()) == {"done"} and len(sweep.statuses()) == 9
    assert len(sweep.starts("grid-0")) == 1  # the existing runs did not train again
    out = tmp_path / "report"
    report = run_cli(
        cli.report_command,
        "grid-report",
        ["--queue", str(sweep.queue_dir), "--out", str(out)] + ["--json", "--last", "1"],
    )
    assert report.code == 0, report.err
    points = json.loads(report.out)
    assert [p["point"] for p in points] == [1, 2, 0]
    for record in points:
        assert record["run_ids"] == names[record["point"]]
        assert record["seeds"] == 3
        assert record["mean"] == pytest.approx(sum(curves[record["point"]]) / 3)
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [(r["point"], r["seeds"]) for r in rows] == [("1", "3"), ("2", "3"), ("0", "3")]
    # HParams: every run has its session, with its seed in the experiment's domain.
    queue = sweep.queue
    # grid-0 and grid-1 train with the random seed (-1).
    assert sweep_seeds(queue.sweep, queue.template) == [-1, 0, 1, 2]
    for run_id in queue.sweep.run_ids:
        folder = tmp_path / "results" / run_id
        assert any(p.name.endswith(hparams.SUFFIX) for p in folder.iterdir()), run_id
