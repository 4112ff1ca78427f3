"""grid-plan --seeds: run ids, config_info, job files, configs and status; bad values."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from mlagents_grid import cli
from mlagents_grid.queue import Queue

from .conftest import SEED_3DBALL, SEED_CONFIG_INFO, run_cli, tree, write
from .test_planner import GOALIE_STRIKER

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
    assert ball.config_info.read_bytes() == SEED_CONFIG_INFO.encode()
    gs = plan(workdir, "gs.yaml", "--queue", "gs", *seeds)
    assert gs.config_info.read_bytes() == goalie_striker_config_info("gs").encode()
    assert ball.sweep.run_ids == [f"3DBall-{i}" for i in range(9)]
    # The job file as it was before seeds: no point, no seed, no seed assignment.
    assert ball.job_file("3DBall-4").read_text() == json.dumps(
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
    assert "seeds" not in json.loads(ball.sweep_file.read_text())
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
    assert json.loads(queue.sweep_file.read_text())["seeds"] == 3
    betas = [0.001, 0.002]
    assert queue.config_info.read_text().splitlines() == [
        f"ball-{point}-s{k} - 3DBall - beta: {betas[point]} - seed: {expected_seeds[k]}"
        for point in range(2)
        for k in range(3)
    ]
    for index, run_id in enumerate(ids):
        job = queue.job(run_id)
        assert (job.index, job.point, job.seed) == (index, index // 3, expected_seeds[index % 3])
        raw = json.loads(queue.job_file(run_id).read_text())
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
