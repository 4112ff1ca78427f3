"""Successive-halving rungs: the config, the pure decision, and sweeps through real workers."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.metrics import Scalar
from mlagents_grid.queue import Queue
from mlagents_grid.rungs import (
    RungDecision,
    Rungs,
    decide_rung,
    point_score,
    quota,
    run_score,
    simulate,
    window_score,
)

from .board import Board
from .conftest import run_cli, tree, write
from .test_real_mlagents import MONITOR_EXIT_S, RealSweep, behavior, finish, real_test

TAG = "Environment/Cumulative Reward"


def pts(*pairs: tuple[int, float]) -> list[Scalar]:
    return [Scalar(step, value, 0.0) for step, value in pairs]


# -- pure -----------------------------------------------------------------------------
def test_window_score_uses_points_at_or_before_the_rung_step() -> None:
    points = pts((1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 100.0))
    assert window_score(points, 4, 2) == 3.5  # the overshoot at step 5 is left out
    assert window_score(points, 4, 10) == 2.5
    assert window_score(points, 0, 3) is None
    assert window_score(pts((1, float("nan")), (2, 1.0)), 2, 5) == 1.0


def test_run_score_is_the_mean_over_behaviors_and_point_score_over_seeds() -> None:
    curves = {"A": pts((1, 1.0), (2, 3.0)), "B": pts((1, 10.0)), "C": []}
    assert run_score(curves, 2, 1) == (3.0 + 10.0) / 2
    assert run_score({"A": []}, 2, 1) is None
    assert point_score([1.0, None, 3.0]) == 2.0
    assert point_score([None]) is None


def test_quota_is_ceil_of_keep_times_points() -> None:
    assert quota(27, 1 / 3) == 9
    assert quota(9, 1 / 3) == 3
    assert quota(9, 0.34) == 4
    assert quota(2, 0.1) == 1
    assert quota(0, 0.5) == 0


def test_decide_rung_promotes_the_best_and_explains_the_others() -> None:
    scores: dict[int, float | None] = {p: float(p) / 10 for p in range(9)}
    scores[4] = None  # no data: ranks last
    runs = {p: [f"g-{p}"] for p in range(9)}
    decision = decide_rung(1, 20000, 1 / 3, scores, runs, eligible=set(range(9)) - {8})
    # 8 is the best score but was final before the rung: it takes no place.
    assert decision.promoted == [7, 6, 5]
    assert decision.cut == 0.5
    assert sorted(decision.stopped) == [0, 1, 2, 3, 4]
    by_point = {v.point: v for v in decision.verdicts}
    assert by_point[8].rank == 1 and not by_point[8].eligible
    assert by_point[3].reason == "rung 1 (step 20000): rank 5 of 9, score 0.3 < cut 0.5"
    assert by_point[4].rank == 9 and "no score" in by_point[4].reason
    assert decision.verdict_for("g-6") == by_point[6]
    again = RungDecision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision


def test_decide_rung_breaks_ties_by_grid_order_and_is_deterministic() -> None:
    scores: dict[int, float | None] = {0: 1.0, 1: 1.0, 2: 1.0}
    first = decide_rung(2, 10, 0.5, scores, {}, {0, 1, 2})
    assert first.promoted == [0, 1]
    assert "ties the cut" in first.verdicts[2].reason
    assert decide_rung(2, 10, 0.5, dict(reversed(scores.items())), {}, {2, 1, 0}) == first


def test_simulate_trains_about_a_quarter_of_the_full_grid() -> None:
    rng = random.Random(1)
    curves = {p: [p + rng.gauss(0, 0.1) for _ in range(90)] for p in range(27)}
    finalists, trained = simulate(curves, Rungs(TAG, (10, 30), 1 / 3, 5), 90)
    assert finalists == [26, 25, 24]
    assert trained == 27 * 10 + 9 * 20 + 3 * 60
    assert trained / (27 * 90) < 0.27


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


def rung_sweep(new_sweep: Any, root: Path, **options: Any) -> Any:
    runs = {f"grid-{p}": {"curve": {"*": curve(p)}} for p in range(9)}
    return new_sweep(
        root,
        runs=9,
        ticks=60,
        extra=RUNGS,
        options={"default": {"step_delay": 0.04, **options}, "runs": runs},
    )


def monitor_command(sweep: Any) -> list[str]:
    return sweep.command("grid-monitor", "--logdir", str(sweep.root / "results"), "--interval", "1")


def decision(sweep: Any, number: int) -> dict[str, Any]:
    return json.loads((sweep.queue_dir / "rungs" / f"{number}.json").read_text())


def check_outcome(sweep: Any, before: int = 30) -> None:
    """`before`: the step runs stopped at rung 1 stay below (TensorBoard reloads each 1 s)."""
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
    # Runs stopped at rung 1 trained about 10 steps, not 60, and saved their model.
    for p in range(6):
        assert len(sweep.starts(f"grid-{p}")) == 1
        assert sweep.exits(f"grid-{p}")[-1]["step"] < before
        assert sweep.exits(f"grid-{p}")[-1]["reason"] == "sigint"


def wait_final(sweep: Any, timeout: float = 90) -> None:
    sweep.wait_for(lambda: sweep.queue.all_final(), timeout=timeout)


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
            assert proc.wait(timeout=30) == 0, sweep.output(proc)
    finally:
        board.stop()
    check_outcome(sweep, 30 if mode == "logdir" else 60)


def test_monitor_killed_between_a_decision_and_its_promotions(
    new_sweep: Any, tmp_path: Path
) -> None:
    sweep = rung_sweep(new_sweep, tmp_path)
    # The monitor's 10th atomic rename is rungs/1.json (after 9 pause requests): killed
    # right after it, before any promotion.
    faulty = sweep.start(
        [sys.executable, "-m", "tests.faulty", "after", "10", "grid-monitor"]
        + monitor_command(sweep)[1:]
    )
    workers = [sweep.start_worker("--wait") for _ in range(3)]
    assert faulty.wait(timeout=60) == -9, sweep.output(faulty)
    written = decision(sweep, 1)
    assert sweep.events("rung-decided") == []  # killed before it could even log it
    monitor = sweep.start(monitor_command(sweep))
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
    assert decision(sweep, 1) == written
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
    worker.wait(timeout=10)
    sweep.wait_for(lambda: sweep.exits(run_id), timeout=20)
    assert sweep.statuses()[run_id] in ("paused", "interrupted")
    workers = [sweep.start_worker() for _ in range(3)]
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
    assert any(e["run_id"] == run_id for e in sweep.events("paused"))
    check_outcome(sweep)


def test_status_report_and_grid_stop_with_paused_runs(new_sweep: Any, tmp_path: Path) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5]\n  keep: 0.34\n  window: 2\n",
        options={
            "default": {"step_delay": 0.03},
            "runs": {
                "grid-0": {"curve": {"*": [9.0]}},
                "grid-1": {"curve": {"*": [1.0]}},
                "grid-2": {"curve": {"*": [2.0]}, "step_delay": 1.0},
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
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
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
        assert finish([monitor], MONITOR_EXIT_S) == [0]
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
def verdict_of(point: int, runs: tuple[str, ...], promoted: bool, eligible: bool = True) -> Any:
    from mlagents_grid.rungs import PointVerdict

    return PointVerdict(point, runs, 1.0, 1, promoted, eligible, f"verdict of {point}")


def test_runs_pass_decided_rungs_that_let_them_through() -> None:
    from mlagents_grid.rungs import RunAtRung, entered, passed_rungs, passes

    one = RungDecision(
        1,
        5,
        0.5,
        1.0,
        (
            verdict_of(0, ("g-0-s0",), True),
            verdict_of(1, ("g-1-s0",), False),
            verdict_of(2, ("g-2-s0",), False, eligible=False),
        ),
    )
    two = RungDecision(2, 9, 0.5, 1.0, (verdict_of(0, ("g-0-s0",), True),))
    decisions = {1: one, 2: two}
    assert passes(one, "g-0-s1", 0)  # a seed added later follows its promoted point
    assert not passes(one, "g-1-s1", 1)  # ... and its stopped point
    assert passes(one, "g-2-s1", 2) and passes(one, "g-9-s0", 9)  # final before; new point
    assert passed_rungs(0, decisions, "g-9-s0", 9) == 2
    assert passed_rungs(0, decisions, "g-1-s1", 1) == 0
    assert passed_rungs(1, decisions, "g-1-s0", 1) == 2  # retried past rung 1
    runs = [
        RunAtRung("g-0-s0", 0, 2, True),  # promoted at 2, then final
        RunAtRung("g-1-s0", 1, 0, True),  # stopped at rung 1
        RunAtRung("g-9-s0", 9, 0, False),  # added after rung 2 was decided
        RunAtRung("g-1-s1", 1, 0, False),  # a seed added to a point stopped at rung 1
        RunAtRung("g-0-s1", 0, 3, False),  # promoted past rung 3 by hand
    ]
    assert entered(3, decisions, runs) == ["g-0-s0", "g-9-s0"]
    assert entered(1, {}, runs) == ["g-1-s0", "g-9-s0", "g-1-s1"]


def test_extend_refuses_a_change_of_opt_rungs(tmp_path: Path) -> None:
    code, out, queue = plan(tmp_path, f"opt_rungs:\n  tag: {TAG}\n  steps: [10, 30]\n")
    assert code == 0, out
    before = tree(queue) | {"plan.lock"}  # the lock file stays, unlocked
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
    slow = {"step_delay": 0.4}
    runs = {
        "grid-0": {"curve": {"*": [1.0]}},
        "grid-1": {"curve": {"*": [5.0]}, **slow},
        "grid-2": {"curve": {"*": [9.0]}},
        "grid-3": {"curve": {"*": [20.0]}},
    }
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5, 12]\n  keep: 0.5\n  window: 2\n",
        options={"default": {"step_delay": 0.05}, "runs": runs},
    )
    monitor = sweep.start(monitor_command(sweep))
    workers = [sweep.start_worker() for _ in range(3)]
    sweep.wait_for(lambda: (sweep.queue_dir / "rungs" / "1.json").exists(), timeout=60)
    text = (tmp_path / "grid.yaml").read_text()
    grown = write(tmp_path / "grown.yaml", text.replace("[0, 1, 2]", "[0, 1, 2, 3]"))
    result = run_cli(
        cli.plan, "grid-plan", [str(grown), "--extend", "--queue", str(sweep.queue_dir)]
    )
    assert result.code == 0, result.err
    assert not (sweep.queue_dir / "rungs" / "2.json").exists()  # grid-1 is still on its way
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
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
    assert (queue.read_state("grid-0").rung, queue.read_state("grid-1").rung) == (1, 2)
    retried = {e["run_id"]: e for e in sweep.events("retried")}
    assert (retried["grid-0"]["rung"], retried["grid-1"]["rung"]) == (1, 2)
    paused_before = len(sweep.events("paused"))
    monitor = sweep.start(monitor_command(sweep))
    worker = sweep.start_worker()
    for proc in (worker, monitor):
        assert proc.wait(timeout=60) == 0, sweep.output(proc)
    assert set(sweep.statuses().values()) == {"done"}
    assert len(sweep.events("paused")) == paused_before
    assert len(sweep.events("rung-decided")) == 2
    for run_id in ("grid-0", "grid-1"):
        last = sweep.starts(run_id)[-1]
        assert last["resume"] and last["start_step"] >= 5
    assert [e["rung"] for e in sweep.events("promoted") if e["run_id"] == "grid-0"] == [2]


def test_grid_retry_of_a_paused_run_promotes_it_by_hand(new_sweep: Any, tmp_path: Path) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=20,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5]\n  keep: 0.34\n  window: 2\n",
        options={
            "default": {"step_delay": 0.03},
            "runs": {
                "grid-0": {"curve": {"*": [1.0]}},
                "grid-1": {"curve": {"*": [2.0]}},
                "grid-2": {"curve": {"*": [3.0]}, "step_delay": 0.5},
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
    state = sweep.queue.read_state("grid-0")
    assert (state.status, state.rung) == ("pending", 1)
    assert not sweep.queue.paths.pause_file("grid-0").exists()
    event = sweep.events("retried")[0]
    assert (event["run_id"], event["previous"], event["rung"]) == ("grid-0", "paused", 1)
    wait_final(sweep)
    for proc in [*workers, monitor]:
        assert proc.wait(timeout=30) == 0, sweep.output(proc)
    first = decision(sweep, 1)
    assert sorted(v["point"] for v in first["points"]) == [1, 2]  # grid-0 left the rung
    assert first["promoted"] == [2] and first["stopped"] == [1]
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "stopped", "grid-2": "done"}
    assert sweep.starts("grid-0")[-1]["resume"]
