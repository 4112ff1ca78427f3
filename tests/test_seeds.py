"""grid-plan --seeds: run ids, config_info, job files, configs and status; bad values."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from scipy import stats

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue
from mlagents_grid.results import hparams
from mlagents_grid.results.ranking import conclusion, rank, score_point, ties

from .conftest import BIN, SEED_3DBALL, SEED_CONFIG_INFO, run_cli, tree, write
from .support.board import Board
from .support.bounds import ANSWER_S, EXIT_S, STATE_S, SWEEP_S
from .support.configs import GOALIE_STRIKER
from .support.sweep import Sweep

# .venv/bin/grid-plan starts and plans (1 s on a quiet machine).
PLAN_S = 60

TWO_POINTS = """\
behaviors:
  3DBall:
    trainer_type: ppo
    hyperparameters:
      beta: {opt_values: [0.001, 0.002]}
"""


def plan(workdir: Path, *argv: str) -> Queue:
    result = run_cli(cli.plan, "grid-plan", list(argv))
    assert result.code == 0, result.err
    queue_dir = argv[argv.index("--queue") + 1]
    return Queue(workdir / queue_dir)


def status_rows(queue: Queue) -> list[dict[str, object]]:
    result = run_cli(cli.status_command, "grid-status", ["--queue", str(queue.root), "--json"])
    assert result.code == 0, result.err
    return list(json.loads(result.out)["runs"])


def goalie_striker_config_info(prefix: str) -> str:
    """The seed's format written out independently of the planner."""
    values = [0.001, 0.002, 0.003], [0.1, 0.2, 0.3], [0.001, 0.002, 0.003], [0.1, 0.2, 0.3]
    return "".join(
        f"{prefix}-{i} - Goalie - beta: {gb} - epsilon: {ge} - Striker - beta: {sb} - "
        f"epsilon: {se}\n"
        for i, (gb, ge, sb, se) in enumerate(itertools.product(*values))
    )


@pytest.mark.parametrize("seeds", [[], ["--seeds", "1"]])
def test_one_seed_writes_exactly_what_it_always_did(workdir: Path, seeds: list[str]) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    write(workdir / "gs.yaml", GOALIE_STRIKER)
    ball = plan(workdir, "3DBall.yaml", "--queue", "ball", *seeds)
    assert ball.paths.config_info.read_bytes() == SEED_CONFIG_INFO.encode()
    gs = plan(workdir, "gs.yaml", "--queue", "gs", *seeds)
    assert gs.paths.config_info.read_bytes() == goalie_striker_config_info("gs").encode()
    assert ball.sweep.run_ids == [f"3DBall-{i}" for i in range(9)]
    # The job file as it was before seeds: no point, no seed, no seed assignment.
    assert ball.paths.job_file("3DBall-4").read_text() == json.dumps(
        {
            "run_id": "3DBall-4",
            "index": 4,
            "values": {"3DBall": {"beta": 0.002, "epsilon": 0.2}},
            "assignments": [
                [["behaviors", "3DBall", "hyperparameters", "beta"], 0.002],
                [["behaviors", "3DBall", "hyperparameters", "epsilon"], 0.2],
            ],
            "conditions": [],
        }
    )
    assert "seeds" not in json.loads(ball.paths.sweep_file.read_text())
    config = yaml.safe_load(ball.write_config(ball.job("3DBall-4")).read_text())
    assert "env_settings" not in config
    # Status: a point is a run; no seed unless the config sets one.
    rows = status_rows(ball)
    assert [(r["point"], r["seed"]) for r in rows] == [(i, None) for i in range(9)]


def test_one_seed_status_shows_the_configs_own_seed(workdir: Path) -> None:
    write(workdir / "s.yaml", TWO_POINTS + "env_settings: {seed: 7}\n")
    queue = plan(workdir, "s.yaml", "--queue", "q")
    assert [(r["run_id"], r["point"], r["seed"]) for r in status_rows(queue)] == [
        ("s-0", 0, 7),
        ("s-1", 1, 7),
    ]


@pytest.mark.parametrize(
    ("extra", "expected_seeds"),
    [("", [0, 1, 2]), ("env_settings:\n  seed: 42\n  num_envs: 1\n", [42, 43, 44])],
)
def test_three_seeds_on_two_points(workdir: Path, extra: str, expected_seeds: list[int]) -> None:
    write(workdir / "ball.yaml", TWO_POINTS + extra)
    result = run_cli(cli.plan, "grid-plan", ["ball.yaml", "--queue", "q", "--seeds", "3"])
    assert result.code == 0, result.err
    assert "Planned 6 runs" in result.out and "3DBall.beta (2) x 3 seeds" in result.out
    queue = Queue(workdir / "q")
    ids = [f"ball-{point}-s{k}" for point in range(2) for k in range(3)]
    assert queue.sweep.run_ids == ids
    assert json.loads(queue.paths.sweep_file.read_text())["seeds"] == 3
    betas = [0.001, 0.002]
    assert queue.paths.config_info.read_text().splitlines() == [
        f"ball-{point}-s{k} - 3DBall - beta: {betas[point]} - seed: {expected_seeds[k]}"
        for point in range(2)
        for k in range(3)
    ]
    for index, run_id in enumerate(ids):
        job = queue.job(run_id)
        assert (job.index, job.point, job.seed) == (index, index // 3, expected_seeds[index % 3])
        raw = json.loads(queue.paths.job_file(run_id).read_text())
        assert (raw["point"], raw["seed"]) == (index // 3, expected_seeds[index % 3])
        config = yaml.safe_load(queue.write_config(job).read_text())
        assert config["env_settings"]["seed"] == expected_seeds[index % 3]
        assert config["behaviors"]["3DBall"]["hyperparameters"]["beta"] == betas[index // 3]
        if extra:
            assert config["env_settings"]["num_envs"] == 1  # the rest of the section stays
    rows = status_rows(queue)
    assert [(r["run_id"], r["point"], r["seed"]) for r in rows] == [
        (run_id, i // 3, expected_seeds[i % 3]) for i, run_id in enumerate(ids)
    ]


def test_dry_run_and_the_run_limit_count_seeds(workdir: Path) -> None:
    write(workdir / "ball.yaml", TWO_POINTS)
    before = tree(workdir)
    dry = run_cli(cli.plan, "grid-plan", ["ball.yaml", "--seeds", "2", "--dry-run"])
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[:2] == [
        "ball-0-s0 - 3DBall - beta: 0.001 - seed: 0",
        "ball-0-s1 - 3DBall - beta: 0.001 - seed: 1",
    ]
    refused = run_cli(cli.plan, "grid-plan", ["ball.yaml", "--seeds", "3", "--max-runs", "5"])
    assert refused.code == 2 and "6 runs" in refused.err and "--max-runs 6" in refused.err
    assert tree(workdir) == before


@pytest.mark.parametrize(
    ("argv", "config", "expected"),
    [
        (["--seeds", "0"], TWO_POINTS, "--seeds: must be at least 1, got 0"),
        (["--seeds", "-2"], TWO_POINTS, "--seeds: must be at least 1, got -2"),
        (["--seeds", "three"], TWO_POINTS, "--seeds: expected a whole number, got 'three'"),
        (["--seeds", "2.5"], TWO_POINTS, "--seeds: expected a whole number, got '2.5'"),
        (["--seeds=", "--dry-run"], TWO_POINTS, "--seeds: expected a whole number, got ''"),
        (
            ["--seeds", "2"],
            TWO_POINTS + "env_settings:\n  seed: {opt_values: [1, 2]}\n",
            "--seeds 2: ball.yaml sweeps env_settings.seed with opt_values",
        ),
        (
            ["--seeds", "2"],
            TWO_POINTS + "env_settings:\n  seed: lucky\n",
            "ball.yaml: env_settings.seed: expected a whole number",
        ),
    ],
)
def test_bad_seeds_exit_2_with_one_line_and_write_nothing(
    workdir: Path, argv: list[str], config: str, expected: str
) -> None:
    write(workdir / "ball.yaml", config)
    before = tree(workdir)
    result = run_cli(cli.plan, "grid-plan", ["ball.yaml", *argv])
    assert result.code == 2, result.out
    assert result.err.startswith("grid-plan: ") and expected in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert tree(workdir) == before


# -- trainer arguments that would override the seed or a swept key ----------------------
SWEPT_TIME_SCALE = TWO_POINTS + "engine_settings:\n  time_scale: {opt_values: [1, 20]}\n"
SWEPT_DETERMINISTIC = TWO_POINTS + (
    "default_settings:\n  network_settings:\n    deterministic: {opt_values: [false, true]}\n"
)
SWEPT_ENV_ARG = TWO_POINTS + "env_settings:\n  env_args: [--level, {opt_values: [1, 2]}]\n"


@pytest.mark.parametrize(
    ("config", "argv", "flag"),
    [
        (TWO_POINTS, ["--seeds", "3", "--seed=5"], "--seed: --seeds 3 sets env_settings.seed"),
        (TWO_POINTS, ["--seeds", "2", "--seed", "5"], "--seed: --seeds 2 sets"),
        (TWO_POINTS, ["--seeds", "2", "--se=5"], "--se (mlagents-learn reads --seed)"),
        (SWEPT_TIME_SCALE, ["--time-scale=20"], "--time-scale: it sets engine_settings.time_scale"),
        (SWEPT_DETERMINISTIC, ["--deterministic"], "--deterministic: it sets behaviors.3DBall."),
        (SWEPT_ENV_ARG, ["--env-args", "--level", "3"], "--env-args: it sets env_settings.env_"),
        (TWO_POINTS, ["--load"], "--load: grid-worker decides --resume/--force"),
        (TWO_POINTS, ["--run=x"], "--run (mlagents-learn reads --run-id): grid-worker sets"),
    ],
)
def test_trainer_arguments_that_override_the_seed_or_a_swept_key_exit_2_naming_the_flag(
    workdir: Path, config: str, argv: list[str], flag: str
) -> None:
    """mlagents-learn's arguments win over the config: each of these would train every run
    with one value (issue 22, item 1)."""
    write(workdir / "ball.yaml", config)
    before = tree(workdir)
    planned = subprocess.run(
        [str(BIN / "grid-plan"), "ball.yaml", *argv],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=PLAN_S,
    )
    assert planned.returncode == 2, planned.stdout
    lines = planned.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"grid-plan: {flag}"), planned.stderr
    assert tree(workdir) == before


def test_seeds_train_apart_and_an_extension_to_seeds_keeps_a_recorded_seed_out(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """Through the CLI with the fake trainer, which trains with --seed over the config's seed
    as mlagents-learn does: --seeds gives each run its own seed; trainer arguments that set
    no seed pass; a sweep recorded with --seed=5 cannot gain seeds."""
    seeded = new_sweep(tmp_path / "seeded", runs=1, ticks=2, plan_args=("--seeds", "2"))
    one = new_sweep(tmp_path / "one", runs=2, ticks=2, plan_args=("--seed=5", "--time-scale=3"))
    for sweep in (seeded, one):
        worker = sweep.start_worker()
        assert worker.wait(timeout=60) == 0, sweep.output(worker)
    assert {e["run_id"]: e["seed"] for e in seeded.starts()} == {"grid-0-s0": 0, "grid-0-s1": 1}
    assert {e["run_id"]: e["seed"] for e in one.starts()} == {"grid-0": 5, "grid-1": 5}
    before = snapshot_files(one.queue_dir)
    grown = run_cli(
        cli.plan,
        "grid-plan",
        [str(one.root / "grid.yaml"), "--extend", "--queue", str(one.queue_dir), "--seeds", "2"],
    )
    assert grown.code == 2
    assert grown.err.startswith("grid-plan: --seed: --seeds 2 sets env_settings.seed"), grown.err
    assert len(grown.err.strip().splitlines()) == 1
    assert snapshot_files(one.queue_dir) == before
    assert one.statuses() == {"grid-0": "done", "grid-1": "done"}


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- ranking grid points -----------------------------------------------------------------
# Each run writes two points: FIRST then LAST. --last 1 scores LAST; --last 2 their mean.
LAST: dict[int, list[float]] = {0: [1, 2, 3, 4], 1: [10, 11, 12, 14], 2: [9, 10.5, 12.5, 13]}
FIRST: dict[int, list[float]] = {0: LAST[0], 1: [v + 10 for v in LAST[1]], 2: LAST[2]}


def expected_point(scores: list[float]) -> dict[str, float]:
    """What the README promises, computed here with scipy independently of the tool."""
    interval = stats.bootstrap(
        (np.asarray(scores, dtype=float),),
        np.mean,
        confidence_level=0.95,
        n_resamples=9999,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    return {
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "iqm": float(stats.trim_mean(scores, 0.25)),
    }


@pytest.fixture
def seeded_sweep(new_sweep: Callable[..., Sweep], tmp_path: Path) -> Sweep:
    runs = {
        f"grid-{point}-s{k}": {"curve": {"*": [FIRST[point][k], LAST[point][k]]}}
        for point in LAST
        for k in range(4)
    }
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=2,
        options={"default": {"step_delay": 0.0}, "runs": runs},
        plan_args=("--seeds", "4"),
    )
    workers = [sweep.start_worker() for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    return sweep


def report_json(sweep: Sweep, *argv: str) -> tuple[list[dict[str, Any]], Path]:
    out = sweep.root / f"report{'-'.join(argv)}"
    result = run_cli(
        cli.report_command,
        "grid-report",
        ["--queue", str(sweep.queue.root), "--out", str(out), "--json", *argv],
    )
    assert result.code == 0, result.err
    return json.loads(result.out), out  # stdout holds the JSON and nothing else


def test_points_rank_by_seed_means_with_scipy_intervals_and_ties(seeded_sweep: Sweep) -> None:
    # --last 1: points 1 and 2 overlap, point 0 is far below.
    points, out = report_json(seeded_sweep, "--last", "1")
    assert [p["point"] for p in points] == [1, 2, 0]
    assert points[0]["mean"] == pytest.approx((10 + 11 + 12 + 14) / 4)
    assert points[1]["mean"] == pytest.approx((9 + 10.5 + 12.5 + 13) / 4)
    assert points[2]["mean"] == pytest.approx((1 + 2 + 3 + 4) / 4)
    for record in points:
        scores = LAST[record["point"]]
        expected = expected_point(scores)
        assert record["ci_low"] == pytest.approx(expected["ci_low"])
        assert record["ci_high"] == pytest.approx(expected["ci_high"])
        assert record["iqm"] == pytest.approx(expected["iqm"])
        assert record["seeds"] == 4
        assert record["runs"]["done"] == 4
        assert record["values"] == {"environment_parameters": {"index": record["point"]}}
        assert record["run_ids"] == [f"grid-{record['point']}-s{k}" for k in range(4)]
    best, second, last = points
    # The designed data does what the test claims: 1 and 2 overlap, 0 overlaps neither.
    assert second["ci_high"] >= best["ci_low"] and last["ci_high"] < best["ci_low"]
    assert [p["tied"] for p in points] == [True, True, False]
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [(r["point"], r["tied"], r["seeds"]) for r in rows] == [
        ("1", "yes", "4"),
        ("2", "yes", "4"),
        ("0", "no", "4"),
    ]
    assert float(rows[0]["ci_low"]) == pytest.approx(best["ci_low"], rel=1e-3)
    markdown = (out / "report.md").read_text()
    assert "**1 point is tied with the best (grid-1): their 95% intervals overlap; " in markdown
    assert "| 3 | grid-0 | 0 | 2.5 | [" in markdown

    # --last 2: point 1 gained 10 on its first point and is now clearly separated.
    points, out = report_json(seeded_sweep, "--last", "2")
    means = {p["point"]: p["mean"] for p in points}
    assert [p["point"] for p in points] == [1, 2, 0]
    for point, first in FIRST.items():
        scores = [(a + b) / 2 for a, b in zip(first, LAST[point], strict=True)]
        assert means[point] == pytest.approx(sum(scores) / 4)
        assert points[[p["point"] for p in points].index(point)]["ci_low"] == pytest.approx(
            expected_point(scores)["ci_low"]
        )
    assert [p["tied"] for p in points] == [False, False, False]
    markdown = (out / "report.md").read_text()
    assert (
        "**Point grid-1 is the best, separated from every other point by its 95% interval.**"
        in markdown
    )
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_interval_needs_two_seeds_and_iqm_four() -> None:
    assert score_point(0, [5.0]).ci is None and score_point(0, [5.0]).iqm is None
    three = score_point(1, [1.0, 2.0, 6.0])
    assert three.ci is not None and three.iqm is None
    assert three.mean == pytest.approx(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identical scores: a point interval, no warning
        same = score_point(2, [1.1, 1.1, 1.1, 1.1])
    assert same.ci == pytest.approx((1.1, 1.1)) and same.iqm == pytest.approx(1.1)


def test_ties_and_conclusions_on_known_intervals() -> None:
    ranked = rank(
        [
            score_point(0, [1.0, 2.0]),
            score_point(1, []),
            score_point(2, [10.0, 11.0, 12.0]),
            score_point(3, [7.0]),
        ]
    )
    assert [p.point for p in ranked] == [2, 3, 0, 1]  # by mean; no scored seed: last
    tied = ties(ranked)
    assert tied == {2: False, 3: None, 0: False, 1: None}
    assert conclusion(ranked, tied, "g-2").startswith(
        "Point g-2 is separated by its 95% interval from every point that has one; 1 point has "
    )
    one_seed = rank([score_point(0, [3.0]), score_point(1, [4.0])])
    assert "one seed per point" in conclusion(one_seed, ties(one_seed), "g-1")
    assert ties(one_seed) == {0: None, 1: None}


# -- the HParams dashboard -----------------------------------------------------------------
def post(board: Board, route: str, body: dict[str, Any]) -> Any:
    response = requests.post(
        f"{board.url}/data/plugin/hparams/{route}", data=json.dumps(body), timeout=ANSWER_S
    )
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_hparams_dashboard_lists_every_key_and_one_session_per_run(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(  # 2 values of beta x 1 of index = 2 points, x 2 seeds = 4 runs
        tmp_path,
        runs=1,
        ticks=3,
        extra="default_settings:\n  hyperparameters:\n    beta: {opt_values: [0.5, 1]}\n",
        options={"default": {"step_delay": 0.0, "curve": {"*": [1, 2, 3]}}},
        plan_args=("--seeds", "2"),
    )
    queue = sweep.queue
    # A run that starts shows up at once, as the worker will write it.
    first = queue.job("grid-0-s0")
    folder = hparams.write_session(queue, first, "running")
    assert folder == tmp_path / "results" / "grid-0-s0"
    hparams.write_session(queue, first, "running")  # replaces, never piles up
    assert len([p for p in folder.iterdir() if p.name.endswith(hparams.SUFFIX)]) == 1
    sweep.stop("grid-1-s1", reason="by test")  # final without ever training
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    report = run_cli(cli.report_command, "grid-report", ["--queue", str(queue.root)])
    assert report.code == 0, report.err
    scores = {
        row["run_id"]: row["score"]
        for row in csv.DictReader((queue.root / "report" / "runs.csv").open())
    }

    board = Board(tmp_path / "results")
    try:
        board.start()
        request = {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 100,
        }
        deadline = time.monotonic() + STATE_S  # TensorBoard read every session
        groups: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            groups = post(board, "session_groups", request).get("sessionGroups", [])
            trained = [g for g in groups if g["name"] != "grid-1-s1"]
            if len(groups) == 4 and all(len(g["metricValues"]) == 2 for g in trained):
                break
            time.sleep(0.5)
        experiment = post(board, "experiment", {"experimentName": ""})
    finally:
        board.stop()

    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(infos) == {"3DBall.beta", "environment_parameters.index", "seed", "status"}
    assert infos["3DBall.beta"]["domainDiscrete"] == [0.5, 1.0]
    assert infos["environment_parameters.index"]["domainDiscrete"] == [0.0]
    assert infos["seed"]["domainDiscrete"] == [0.0, 1.0]
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert metrics == {("3DBall", "Environment/Cumulative Reward"), ("", "grid/score")}

    sessions = {s["name"]: (g, s) for g in groups for s in g["sessions"]}
    assert sorted(sessions) == queue.sweep.run_ids
    for run_id, (group, _) in sessions.items():
        job = queue.job(run_id)
        assert group["hparams"]["seed"] == job.seed
        assert group["hparams"]["3DBall.beta"] == job.values["3DBall"]["beta"]
        assert group["hparams"]["environment_parameters.index"] == 0
        assert job.point == [0.5, 1].index(group["hparams"]["3DBall.beta"])
        expected = "stopped" if run_id == "grid-1-s1" else "done"
        assert group["hparams"]["status"] == expected
        found = {(m["name"]["group"], m["name"]["tag"]): m["value"] for m in group["metricValues"]}
        if expected == "done":
            assert found[("", "grid/score")] == pytest.approx(float(scores[run_id]))
            assert found[("3DBall", "Environment/Cumulative Reward")] == 3.0


def test_a_training_run_shows_in_the_hparams_dashboard_while_it_trains(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    """The worker writes the session once the trainer made its results folder."""
    sweep = new_sweep(tmp_path, runs=1, ticks=1000, options={"default": {"step_delay": 0.05}})
    worker = sweep.start_worker()
    folder = tmp_path / "results" / "grid-0"
    # The worker looks every 5 s while it supervises a trainer.
    sweep.wait_for(
        lambda: folder.is_dir() and any(p.name.endswith(hparams.SUFFIX) for p in folder.iterdir())
    )
    assert sweep.statuses() == {"grid-0": "running"}
    assert sweep.starts("grid-0")[0]["force"] is False  # the dashboard never made the folder
    sweep.stop("grid-0")
    assert worker.wait(timeout=EXIT_S) == 0
