"""Successive-halving rungs: the config, and sweeps through real workers and the monitor (the
pure scoring and deciding is in tests/unit/test_results.py)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue

from .conftest import run_cli, tree, write
from .support.board import Board
from .support.bounds import EXIT_S, HOLD_S, REAP_S, SWEEP_S
from .test_real_mlagents import RealSweep, behavior, finish, real_test

TAG = "Environment/Cumulative Reward"


# -- grid-plan ------------------------------------------------------------------------
BASE = """\
behaviors:
  B:
    trainer_type: ppo
    max_steps: 100
    summary_freq: 1
environment_parameters:
  index:
    opt_values: [0, 1, 2]
"""


def plan(root: Path, rungs: str) -> tuple[int, str, Path]:
    config = write(root / "grid.yaml", rungs + BASE)
    queue = root / "q"
    result = run_cli(
        cli.plan,
        "grid-plan",
        [str(config), "--queue", str(queue), "--results-dir", str(root / "results")],
    )
    return result.code, result.err + result.out, queue


def test_plan_records_the_rungs_in_sweep_json(tmp_path: Path) -> None:
    code, out, queue = plan(tmp_path, f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 30]\n")
    assert code == 0, out
    assert "rungs:" in out
    sweep = Queue(queue).sweep
    assert sweep.rungs == {"tag": TAG, "steps": [10, 30], "keep": 1 / 3, "window": 5}
    assert "opt_rungs" not in (queue / "template.yaml").read_text()


def test_old_sweeps_without_rungs_still_load(tmp_path: Path) -> None:
    code, out, queue = plan(tmp_path, "")
    assert code == 0, out
    data = json.loads((queue / "sweep.json").read_text())
    del data["rungs"]
    (queue / "sweep.json").write_text(json.dumps(data))
    assert Queue(queue).sweep.rung_plan is None


@pytest.mark.parametrize(
    ("rungs", "message"),
    [
        ("opt_rungs:\n  steps: [10]\n", "opt_rungs.tag: missing"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: []\n", "opt_rungs.steps: missing or empty"),
        (f"opt_rungs:\n  tag: {TAG}\n", "opt_rungs.steps: missing or empty"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [30, 10]\n", "must be increasing"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 10]\n", "must be increasing"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 100]\n", "not below B's max_steps (100)"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10]\n  keep: 1\n", "opt_rungs.keep"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10]\n  keep: 0\n", "opt_rungs.keep"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10]\n  window: 0\n", "opt_rungs.window"),
        (f"opt_rungs:\n  tag: {TAG}\n  steps: [10]\n  every: 3\n", "unknown key 'every'"),
        ("opt_rungs: [10, 20]\n", "opt_rungs: must be a mapping"),
        (
            f"opt_rungs:\n  tag: {TAG}\n  steps: 10\n",
            "opt_rungs.steps: 10 is a number, not a list; write the rung steps as a list, "
            "e.g. `steps: [10]`",
        ),
        ("opt_rungs:\n  tag: 5\n  steps: [10]\n", "opt_rungs.tag: 5 is a number, not a"),
    ],
)
def test_bad_opt_rungs_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, rungs: str, message: str
) -> None:
    before = tree(tmp_path)
    code, out, queue = plan(tmp_path, rungs)
    assert code == 2
    assert message in out
    assert len(out.strip().splitlines()) == 1
    assert not queue.exists()
    assert tree(tmp_path) - before == {"grid.yaml"}


def test_rung_steps_are_checked_against_swept_and_default_max_steps(tmp_path: Path) -> None:
    text = BASE.replace("    max_steps: 100\n", "    max_steps:\n      opt_values: [50, 100]\n")
    config = write(tmp_path / "a.yaml", f"opt_rungs:\n  tag: {TAG}\n  steps: [60]\n" + text)
    result = run_cli(cli.plan, "grid-plan", [str(config), "--queue", str(tmp_path / "q")])
    assert result.code == 2 and "not below B's max_steps (50)" in result.err
    text = "default_settings:\n  max_steps: 40\n" + BASE.replace("    max_steps: 100\n", "")
    config = write(tmp_path / "b.yaml", f"opt_rungs:\n  tag: {TAG}\n  steps: [40]\n" + text)
    result = run_cli(cli.plan, "grid-plan", [str(config), "--queue", str(tmp_path / "q")])
    assert result.code == 2 and "max_steps (40)" in result.err


# -- sweeps through real workers and the monitor ---------------------------------------
RUNGS = f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 30]\n  keep: 0.3333\n  window: 3\n"
# Points 6, 7, 8 lead at rung 1 (step 10); at rung 2 (step 30) point 6 leads: curves cross.
EARLY = {p: float(p) for p in range(9)}
LATE = {6: 20.0, 7: 5.0, 8: 6.0}


def curve(point: int) -> list[float]:
    late = LATE.get(point, float(point))
    return [EARLY[point]] * 10 + [late] * 50


def caught_at(*steps: int) -> dict[str, Any]:
    """Fake-trainer options: hold each run at these rung steps until the monitor pauses it,
    as a slower trainer would, so that no run outruns a monitor slowed by a loaded machine."""
    return {"hold_at": list(steps), "hold_s": HOLD_S}


def rung_sweep(new_sweep: Any, root: Path, **options: Any) -> Any:
    runs = {f"grid-{p}": {"curve": {"*": curve(p)}} for p in range(9)}
    return new_sweep(
        root,
        runs=9,
        ticks=60,
        extra=RUNGS,
        options={"default": {"step_delay": 0.04, **caught_at(10, 30), **options}, "runs": runs},
    )


def monitor_command(sweep: Any) -> list[str]:
    return sweep.command("grid-monitor", "--logdir", str(sweep.root / "results"), "--interval", "1")


def decision(sweep: Any, number: int) -> dict[str, Any]:
    return json.loads((sweep.queue_dir / "rungs" / f"{number}.json").read_text())


def check_outcome(sweep: Any) -> None:
    first, second = decision(sweep, 1), decision(sweep, 2)
    assert sorted(first["promoted"]) == [6, 7, 8]
    assert sorted(first["stopped"]) == [0, 1, 2, 3, 4, 5]
    assert second["promoted"] == [6] and sorted(second["stopped"]) == [7, 8]
    statuses = sweep.statuses()
    assert statuses == {f"grid-{p}": "done" if p == 6 else "stopped" for p in range(9)}
    reasons = {r["run_id"]: r["stop_reason"] for r in sweep.report()["runs"]}
    assert reasons["grid-0"].startswith("rung 1 (step 10): rank 9 of 9, score 0 < cut 6")
    assert reasons["grid-7"].startswith("rung 2 (step 30): rank 3 of 3, score 5 < cut 20")
    # Never decided twice, never promoted twice.
    decided = [e["rung"] for e in sweep.events("rung-decided")]
    assert sorted(set(decided)) == sorted(decided)  # the event of a killed monitor may be lost
    assert set(decided) >= {2}
    promoted = [(e["run_id"], e["rung"]) for e in sweep.events("promoted")]
    assert sorted(promoted) == sorted({("grid-6", 1), ("grid-6", 2), ("grid-7", 1), ("grid-8", 1)})
    # Promoted runs resume from where they paused, never from 0.
    for run_id in ("grid-6", "grid-7", "grid-8"):
        starts = sweep.starts(run_id)
        assert starts[0]["start_step"] == 0
        for start in starts[1:]:
            assert start["resume"] and start["start_step"] >= 10, starts
    last = sweep.starts("grid-6")[-1]
    assert last["start_step"] >= 30
    # Runs stopped at rung 1 trained 10 steps, not 60, and saved their model.
    for p in range(6):
        assert len(sweep.starts(f"grid-{p}")) == 1
        assert sweep.exits(f"grid-{p}")[-1]["step"] == 10
        assert sweep.exits(f"grid-{p}")[-1]["reason"] == "sigint"


def wait_final(sweep: Any) -> None:
    sweep.wait_for(lambda: sweep.queue.all_final(), timeout=SWEEP_S)


@pytest.mark.parametrize("mode", ["logdir", "tensorboard"])
def test_nine_points_two_rungs_promote_the_expected_points(
    new_sweep: Any, tmp_path: Path, mode: str
) -> None:
    sweep = rung_sweep(new_sweep, tmp_path)
    board = Board(tmp_path / "results")
    try:
        if mode == "logdir":
            monitor = sweep.start(monitor_command(sweep))
        else:
            board.start()
            monitor = sweep.start(
                sweep.command("grid-monitor", "--tensorboard", board.url, "--interval", "0.5")
            )
        workers = [sweep.start_worker() for _ in range(3)]  # plain workers, no --wait
        wait_final(sweep)
        for proc in [*workers, monitor]:
            assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    finally:
        board.stop()
    check_outcome(sweep)


def test_monitor_killed_between_a_decision_and_its_promotions(
    new_sweep: Any, tmp_path: Path
) -> None:
    sweep = rung_sweep(new_sweep, tmp_path)
    # The monitor's 10th atomic rename is rungs/1.json (after 9 pause requests): killed
    # right after it, before any promotion.
    faulty = sweep.start(
        [sys.executable, "-m", "tests.support.faulty", "after", "10", "grid-monitor"]
        + monitor_command(sweep)[1:]
    )
    workers = [sweep.start_worker("--wait") for _ in range(3)]
    assert faulty.wait(timeout=SWEEP_S) == -9, sweep.output(faulty)
    written = decision(sweep, 1)
    assert sweep.events("rung-decided") == []  # killed before it could even log it
    monitor = sweep.start(monitor_command(sweep))
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    assert decision(sweep, 1) == written
    # The next monitor found the decision without its event, and wrote it.
    recovered = [e for e in sweep.events("rung-decided") if e.get("recovered")]
    assert [e["rung"] for e in recovered] == [1]
    assert recovered[0]["promoted"] == written["promoted"]
    check_outcome(sweep)


def test_a_second_monitor_stands_by_and_takes_over_when_the_first_dies(
    new_sweep: Any, tmp_path: Path
) -> None:
    sweep = rung_sweep(new_sweep, tmp_path)
    first = sweep.start(monitor_command(sweep))
    sweep.wait_for(lambda: sweep.events("monitor-started"))
    second = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker("--wait") for _ in range(3)]
    sweep.wait_for(lambda: "standing by" in sweep.output(second))
    active = sweep.events("monitor-started")[0]["worker"]
    assert f"another monitor is active ({active.split()[-1]}); standing by" in sweep.output(second)
    # Killed only once rung 1's 3 promotions are written (after its event): a kill between the
    # decision and its event is the recovery test's case, and a kill between a promotion's
    # state and its event loses that event (see events.jsonl in the README), not this case.
    sweep.wait_for(
        lambda: len([e for e in sweep.events("promoted") if e["rung"] == 1]) == 3,
        timeout=SWEEP_S,
    )
    first.kill()
    first.wait(timeout=10)
    wait_final(sweep)
    for proc in [*workers, second]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
    assert "the other monitor is gone; this one acts now" in sweep.output(second)
    started = [e["worker"] for e in sweep.events("monitor-started")]
    assert len(started) == 2 and started[0] != started[1]
    # Each rung decided once, rung 1 by the first monitor and rung 2 by the second.
    by = {e["rung"]: e["by"] for e in sweep.events("rung-decided")}
    assert by == {1: started[0], 2: started[1]}
    check_outcome(sweep)


def test_worker_killed_while_its_run_pauses_leaves_it_paused_not_lost(
    new_sweep: Any, tmp_path: Path
) -> None:
    # Saving takes 1.5 s: the worker is killed while its trainer saves for the pause.
    sweep = rung_sweep(new_sweep, tmp_path, sigint_delay=1.5)
    monitor = sweep.start(monitor_command(sweep))
    worker = sweep.start_worker()
    sweep.wait_for(lambda: [e for e in sweep.ledger_entries() if e.get("event") == "sigint"])
    run_id = next(e["run_id"] for e in sweep.ledger_entries() if e.get("event") == "sigint")
    worker.kill()
    worker.wait(timeout=REAP_S)
    sweep.wait_for(lambda: sweep.exits(run_id))
    # Its launcher, orphaned, records the exit once the trainer has saved.
    sweep.wait_for(lambda: sweep.statuses()[run_id] in ("paused", "interrupted"))
    workers = [sweep.start_worker() for _ in range(3)]
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    assert any(e["run_id"] == run_id for e in sweep.events("paused"))
    check_outcome(sweep)


def test_status_report_and_grid_stop_with_paused_runs(new_sweep: Any, tmp_path: Path) -> None:
    gate = tmp_path / "reported"  # grid-2 stays short of the rung until the test has looked
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5]\n  keep: 0.34\n  window: 2\n",
        options={
            "default": {"step_delay": 0.03, **caught_at(5)},
            "runs": {
                "grid-0": {"curve": {"*": [9.0]}},
                "grid-1": {"curve": {"*": [1.0]}},
                "grid-2": {"curve": {"*": [2.0]}, "gate_at": {"4": str(gate)}},
            },
        },
    )
    monitor = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker() for _ in range(3)]
    sweep.wait_for(
        lambda: sweep.statuses()["grid-0"] == "paused" and sweep.statuses()["grid-1"] == "paused"
    )
    report = sweep.report()
    assert report["counts"]["paused"] == 2
    assert report["rungs"]["current"] == 1 and report["rungs"]["paused"] == 2
    table = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir)])
    assert "rung 1 of 1 (step 5): 2/3 runs there (2 paused, 0 final)" in table.out
    assert "paused" in table.out
    # A paused run that gets a kill file is stopped at once; it takes no place at the rung.
    sweep.stop("grid-0", reason="by hand")
    assert sweep.statuses()["grid-0"] == "stopped"
    assert not sweep.queue.paths.pause_file("grid-0").exists()  # answered, not left behind
    gate.touch()
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    first = decision(sweep, 1)
    assert first["promoted"] == [2, 1] and first["stopped"] == []
    assert sweep.statuses() == {"grid-0": "stopped", "grid-1": "done", "grid-2": "done"}
    result = run_cli(cli.report_command, "grid-report", ["--queue", str(sweep.queue_dir)])
    assert result.code == 0, result.err
    markdown = (sweep.queue_dir / "report" / "report.md").read_text()
    assert "## Rungs" in markdown
    assert "### Rung 1 (step 5): 2 of 3 points promoted, cut 1" in markdown
    assert "| 1 | 0 | grid-0 | 9 | final before |" in markdown


# -- the real ML-Agents stack ---------------------------------------------------------
@pytest.mark.real_mlagents
@real_test
def test_real_four_points_one_rung(tmp_path: Path, sim_learn: Path) -> None:
    config = (
        f"opt_rungs:\n  tag: {TAG}\n  steps: [2000]\n  keep: 0.5\n  window: 2\n"
        + "behaviors:\n  3DBall:\n"
        + behavior("{opt_values: [0.00001, 0.0003, 0.001, 0.003]}", max_steps=5000)
    )
    sweep = RealSweep(tmp_path, config, sim_learn)
    try:
        monitor = sweep.start("grid-monitor", "--logdir", str(sweep.results), "--interval", "1")
        workers = [sweep.worker() for _ in range(2)]
        assert finish(workers) == [0, 0]
        assert finish([monitor], EXIT_S) == [0]
    finally:
        sweep.close()
    first = json.loads((sweep.queue_dir / "rungs" / "1.json").read_text())
    assert len(first["promoted"]) == 2 and len(first["stopped"]) == 2
    assert 0 not in first["promoted"]  # learning_rate 1e-5 has learned nothing by step 2000
    statuses = sweep.statuses()
    for point in range(4):
        run_id = sweep.queue.sweep.run_ids[point]
        if point in first["promoted"]:
            assert statuses[run_id] == "done"
            # Resumed from its checkpoint, never retrained from 0: the one saved at the pause
            # (the trainer's own step, which may trail the rung's summary a little), or the
            # one before it when mlagents-learn fails to export while it saves (a SIGINT that
            # lands in torch's first import of onnx breaks that import; seen under load).
            log = sweep.log(run_id)
            resumed = re.findall(r"Resuming training from step (\d+)", log)
            before = log.split("Resuming training", 1)[0]
            saved = re.findall(r"Exported .*-(\d+)\.onnx", before)
            assert resumed and int(resumed[0]) > 1000, log
            assert not saved or int(resumed[0]) == int(saved[-1]), log
        else:
            assert statuses[run_id] == "stopped"


# -- rungs with --extend and grid-retry -------------------------------------------------
def test_extend_refuses_a_change_of_opt_rungs(tmp_path: Path) -> None:
    code, out, queue = plan(tmp_path, f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 30]\n")
    assert code == 0, out
    before = tree(queue)  # a refused extension leaves no claim behind either
    for rungs in (f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 40]\n", ""):
        config = write(tmp_path / "grown.yaml", rungs + BASE.replace("[0, 1, 2]", "[0, 1, 2, 3]"))
        result = run_cli(cli.plan, "grid-plan", [str(config), "--extend", "--queue", str(queue)])
        assert result.code == 2
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("grid-plan: --extend: opt_rungs changed")
        assert tree(queue) == before
    code, out, other = plan(tmp_path / "plain", "")
    assert code == 0, out
    config = write(tmp_path / "rungs.yaml", f"opt_rungs:\n  tag: {TAG}\n  steps: [10]\n" + BASE)
    result = run_cli(cli.plan, "grid-plan", [str(config), "--extend", "--queue", str(other)])
    assert result.code == 2 and "opt_rungs changed from (not set) to {" in result.err


def test_a_point_added_after_rung_1_joins_rung_2_and_retried_runs_train_on(
    new_sweep: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "extended"  # grid-1 stays short of rung 2 until the sweep is extended
    curves: dict[str, dict[str, Any]] = {
        f"grid-{p}": {"curve": {"*": [value]}} for p, value in enumerate([1.0, 5.0, 9.0, 20.0])
    }
    runs = {
        **curves,
        "grid-1": {**curves["grid-1"], "gate_at": {"11": str(gate)}},
        "grid-3": {**curves["grid-3"], **caught_at(12)},  # added after rung 1
    }
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5, 12]\n  keep: 0.5\n  window: 2\n",
        options={"default": {"step_delay": 0.05, **caught_at(5, 12)}, "runs": runs},
    )
    monitor = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker() for _ in range(3)]
    sweep.wait_for(lambda: (sweep.queue_dir / "rungs" / "1.json").exists())
    text = (tmp_path / "grid.yaml").read_text()
    grown = write(tmp_path / "grown.yaml", text.replace("[0, 1, 2]", "[0, 1, 2, 3]"))
    result = run_cli(
        cli.plan, "grid-plan", [str(grown), "--extend", "--queue", str(sweep.queue_dir)]
    )
    assert result.code == 0, result.err
    assert not (sweep.queue_dir / "rungs" / "2.json").exists()  # grid-1 is still on its way
    gate.touch()
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    first, second = decision(sweep, 1), decision(sweep, 2)
    assert sorted(first["promoted"]) == [1, 2] and first["stopped"] == [0]
    assert 3 not in [v["point"] for v in first["points"]]
    # The added point trained straight to rung 2 and took part in it.
    assert sorted(v["point"] for v in second["points"]) == [1, 2, 3]
    assert second["promoted"] == [3, 2] and second["stopped"] == [1]
    paused = [(e["run_id"], e["rung"]) for e in sweep.events("paused")]
    assert ("grid-3", 2) in paused and ("grid-3", 1) not in paused
    passed = [e for e in sweep.events("promoted") if e["run_id"] == "grid-3"]
    assert [e["rung"] for e in passed] == [1, 2]
    assert "rung 1 was decided without it" in passed[0]["reason"]
    assert sweep.statuses() == {
        "grid-0": "stopped",
        "grid-1": "stopped",
        "grid-2": "done",
        "grid-3": "done",
    }
    # grid-retry of runs stopped by rungs: each is promoted past the rung that stopped it
    # and trains to the end; no rung stops it again and none pauses it.
    queue = sweep.queue
    result = run_cli(
        cli.retry_command, "grid-retry", ["--queue", str(sweep.queue_dir), "--stopped"]
    )
    assert result.code == 0, result.err
    assert (queue.state_of("grid-0").rung, queue.state_of("grid-1").rung) == (1, 2)
    retried = {e["run_id"]: e for e in sweep.events("retried")}
    assert (retried["grid-0"]["rung"], retried["grid-1"]["rung"]) == (1, 2)
    paused_before = len(sweep.events("paused"))
    sweep.options = {"default": {"step_delay": 0.05}, "runs": curves}  # nothing held now
    monitor = sweep.start(monitor_command(sweep))
    worker = sweep.start_worker()
    for proc in (worker, monitor):
        assert proc.wait(timeout=SWEEP_S) == 0, sweep.output(proc)
    assert set(sweep.statuses().values()) == {"done"}
    assert len(sweep.events("paused")) == paused_before
    assert len(sweep.events("rung-decided")) == 2
    for run_id in ("grid-0", "grid-1"):
        last = sweep.starts(run_id)[-1]
        assert last["resume"] and last["start_step"] >= 5
    assert [e["rung"] for e in sweep.events("promoted") if e["run_id"] == "grid-0"] == [2]


def test_grid_retry_of_a_paused_run_promotes_it_by_hand(new_sweep: Any, tmp_path: Path) -> None:
    gate = tmp_path / "retried"  # grid-2 stays short of the rung until grid-0 is retried
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5]\n  keep: 0.34\n  window: 2\n",
        options={
            "default": {"step_delay": 0.03, **caught_at(5)},
            "runs": {
                "grid-0": {"curve": {"*": [1.0]}},
                "grid-1": {"curve": {"*": [2.0]}},
                "grid-2": {"curve": {"*": [3.0]}, "gate_at": {"4": str(gate)}},
            },
        },
    )
    monitor = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker() for _ in range(3)]
    sweep.wait_for(lambda: sweep.statuses()["grid-0"] == "paused")
    assert sweep.queue.paths.pause_file("grid-0").exists()
    result = run_cli(cli.retry_command, "grid-retry", ["--queue", str(sweep.queue_dir), "grid-0"])
    assert result.code == 0, result.err
    assert "grid-0: retried (was paused at rung 1; retry 1)" in result.out
    # The retried run is free at once: a worker that finished its own run may have claimed
    # it already (under load it often has), and a claim keeps the rung the retry recorded.
    state = sweep.queue.state_of("grid-0")
    assert state.status in ("pending", "running"), state
    assert (state.rung, state.retries) == (1, 1)
    assert not sweep.queue.paths.pause_file("grid-0").exists()
    event = sweep.events("retried")[0]
    assert (event["run_id"], event["previous"], event["rung"]) == ("grid-0", "paused", 1)
    gate.touch()
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=EXIT_S) == 0, sweep.output(proc)
    first = decision(sweep, 1)
    assert sorted(v["point"] for v in first["points"]) == [1, 2]  # grid-0 left the rung
    assert first["promoted"] == [2] and first["stopped"] == [1]
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "stopped", "grid-2": "done"}
    assert sweep.starts("grid-0")[-1]["resume"]


def test_grid_retry_of_rung_losers_keeps_the_next_rungs_places_and_says_so_first(
    new_sweep: Any, tmp_path: Path
) -> None:
    """Six points, keep 0.5: rung 1 promotes 5, 4, 3. Retrying losers 1 and 2 before rung 2
    is decided leaves rung 2 its ceil(0.5 x 3) = 2 places, so 3 is stopped there."""
    runs: dict[str, dict[str, Any]] = {f"grid-{p}": {"curve": {"*": [float(p)]}} for p in range(6)}
    runs["grid-5"]["step_delay"] = 0.2  # holds rung 2 back while the losers are retried
    sweep = new_sweep(
        tmp_path,
        runs=6,
        ticks=60,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5, 40]\n  keep: 0.5\n  window: 2\n",
        options={"default": {"step_delay": 0.02}, "runs": runs},
    )
    monitor = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker() for _ in range(3)]
    sweep.wait_for(
        lambda: all(sweep.statuses()[f"grid-{p}"] == "stopped" for p in (0, 1, 2)), timeout=90
    )
    assert not (sweep.queue_dir / "rungs" / "2.json").exists()
    result = run_cli(
        cli.retry_command, "grid-retry", ["--queue", str(sweep.queue_dir), "grid-1", "grid-2"]
    )
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (
        "grid-1: it joins rung 2 (step 40) without adding a place: the rung keeps 2 places "
        "for the 3 points rung 1 promoted (ceil(0.5 x 3)), and it competes for them"
    )
    assert lines[1].startswith("grid-2: it joins rung 2 (step 40) without adding a place")
    assert lines[2].startswith("grid-1: retried")  # said before it acted
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
    second = decision(sweep, 2)
    assert sorted(v["point"] for v in second["points"]) == [1, 2, 3, 4, 5]
    assert second["promoted"] == [5, 4] and sorted(second["stopped"]) == [1, 2, 3]
    assert sweep.statuses() == {f"grid-{p}": "done" if p > 3 else "stopped" for p in range(6)}
