"""Successive-halving rungs: the config, the pure decision, and sweeps through real workers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlagents_grid import cli
from mlagents_grid.metrics import Scalar
from mlagents_grid.queue import Queue
from mlagents_grid.rungs import (
    RungDecision,
    Rungs,
    decide_rung,
    point_of,
    point_score,
    quota,
    run_score,
    simulate,
    window_score,
)

from .conftest import run_cli, tree, write

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


def test_point_of_uses_the_seed_point_when_jobs_have_one() -> None:
    assert point_of(SimpleNamespace(index=7)) == 7
    assert point_of(SimpleNamespace(index=7, point=2)) == 2


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
