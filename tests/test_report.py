"""grid-report and grid-status metrics on event files written by the fake trainer."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from mlagents_grid import cli

from .conftest import run_cli
from .support.bounds import EXIT_S, SWEEP_S
from .support.sweep import Sweep

BETA_SWEEP = "default_settings:\n  hyperparameters:\n    beta: {opt_values: [1, 2]}\n"


def finished_sweep(new_sweep: Callable[..., Sweep], root: Path) -> Sweep:
    """4 runs: two done with known curves, one failed after one point, one never started."""
    sweep = new_sweep(
        root,
        runs=2,
        ticks=6,
        extra=BETA_SWEEP,
        options={
            "default": {"step_delay": 0.01},
            "runs": {
                "grid-0": {"curve": {"*": [1, 2, 3, 4, 5, 6]}},
                "grid-1": {"curve": {"*": [10]}},
                "grid-2": {"curve": {"*": [7]}, "crash": 3},
            },
        },
        plan_args=("--max-attempts", "1"),
    )
    sweep.stop("grid-3", reason="not needed")
    worker = sweep.start_worker()
    assert worker.wait(timeout=SWEEP_S) == 0, sweep.output(worker)
    return sweep


def test_report_ranks_scores_and_tabulates_values_exactly(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = finished_sweep(new_sweep, tmp_path)
    assert sweep.statuses() == {
        "grid-0": "done",
        "grid-1": "done",
        "grid-2": "failed",
        "grid-3": "stopped",
    }
    out = tmp_path / "out"
    result = run_cli(
        cli.report_command, "grid-report", ["--queue", str(sweep.queue.root), "--out", str(out)]
    )
    assert result.code == 0, result.err
    assert "1. grid-1" in result.out and str(out / "curves.png") in result.out

    # One seed per point: a point is a run, so points rank as the runs did.
    points = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["run_ids"] for r in points] == ["grid-1", "grid-2", "grid-0", "grid-3"]
    assert [r["point"] for r in points] == ["1", "2", "0", "3"]
    assert [r["mean"] for r in points] == ["10", "7", "4", ""]
    assert [r["seeds"] for r in points] == ["1", "1", "1", "0"]
    assert [(r["ci_low"], r["ci_high"], r["iqm"], r["tied"]) for r in points] == [("",) * 4] * 4
    assert [(r["runs:done"], r["runs:failed"], r["runs:stopped"]) for r in points] == [
        ("1", "0", "0"),
        ("0", "1", "0"),
        ("1", "0", "0"),
        ("0", "0", "1"),
    ]
    assert points[0]["3DBall.beta"] == "1" and points[0]["environment_parameters.index"] == "1"
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["run_id"] for r in rows] == ["grid-1", "grid-2", "grid-0", "grid-3"]
    assert [r["score"] for r in rows] == ["10", "7", "4", ""]
    assert [r["status"] for r in rows] == ["done", "failed", "done", "stopped"]
    assert [r["steps"] for r in rows] == ["6", "1", "6", "0"]
    assert [(r["point"], r["seed"]) for r in rows] == [("1", ""), ("2", ""), ("0", ""), ("3", "")]
    assert rows[3]["stop_reason"] == "not needed"
    assert rows[0]["3DBall.beta"] == "1" and rows[0]["environment_parameters.index"] == "1"

    markdown = (out / "report.md").read_text()
    assert "mean of the last 5 points" in markdown
    assert "No 95% intervals: one seed per point" in markdown and "--seeds" in markdown
    assert "| 1 | grid-1 | 1 | 1 | 10 | - | - | 1 | - | 1 done |" in markdown
    assert "| grid-3 | grid-3 |  |  | stopped | 0 | not needed |" in markdown
    snippet = markdown.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(snippet) == {
        "behaviors": {"3DBall": {"hyperparameters": {"beta": 1}}},
        "environment_parameters": {"index": 1},
    }
    assert "| 1 | 7 | 10 | 2 |" in markdown  # beta=1: grid-0 (4) and grid-1 (10)
    assert "| 2 | 7 | 7 | 1 |" in markdown  # beta=2: grid-2 (7); grid-3 has no data
    assert "| 0 | 5.5 | 7 | 2 |" in markdown  # index=0: grid-0 (4) and grid-2 (7)

    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20_000


def test_last_k_changes_the_score(new_sweep: Callable[..., Sweep], tmp_path: Path) -> None:
    sweep = finished_sweep(new_sweep, tmp_path)
    result = run_cli(
        cli.report_command, "grid-report", ["--queue", str(sweep.queue.root), "--last", "2"]
    )
    assert result.code == 0, result.err
    rows = list(csv.DictReader((sweep.queue.root / "report" / "leaderboard.csv").open()))
    assert {r["run_ids"]: r["mean"] for r in rows}["grid-0"] == "5.5"
    bad = run_cli(
        cli.report_command, "grid-report", ["--queue", str(sweep.queue.root), "--last", "0"]
    )
    assert bad.code == 2 and "--last" in bad.err


def test_status_shows_steps_metrics_and_progress(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = finished_sweep(new_sweep, tmp_path)
    result = run_cli(
        cli.status_command, "grid-status", ["--queue", str(sweep.queue.root), "--json"]
    )
    report = json.loads(result.out)
    by_id = {r["run_id"]: r for r in report["runs"]}
    assert (by_id["grid-0"]["step"], by_id["grid-0"]["metric"]) == (6, 6.0)
    assert (by_id["grid-2"]["step"], by_id["grid-2"]["metric"]) == (1, 7.0)
    assert by_id["grid-3"]["step"] is None
    assert report["progress"]["final"] == report["progress"]["total"] == 4
    # Final runs are read once and kept: the next call reads no event file for them.
    kept = sweep.queue.paths.score_file("grid-0")
    stamp = kept.stat().st_mtime_ns
    again = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue.root)])
    assert kept.stat().st_mtime_ns == stamp
    assert "4/4 final" in again.out and "grid-1" in again.out


def test_report_on_a_partial_sweep_with_two_behaviors(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=2,
        ticks=400,
        behaviors=("Goalie", "Striker"),
        options={
            "default": {"step_delay": 0.02, "curve": {"Goalie": [2], "Striker": [4]}},
            "runs": {"grid-1": {"step_delay": 0.2, "curve": {"Goalie": [1], "Striker": [1]}}},
        },
    )
    sweep.stop("grid-0", reason="by test")  # never starts
    worker = sweep.start_worker()
    sweep.wait_for_training("grid-1", "Striker")
    sweep.wait_for(lambda: sweep.statuses()["grid-1"] == "running")
    result = run_cli(cli.report_command, "grid-report", ["--queue", str(sweep.queue.root)])
    assert result.code == 0, result.err
    rows = list(csv.DictReader((sweep.queue.root / "report" / "runs.csv").open()))
    assert rows[0]["run_id"] == "grid-1" and rows[0]["status"] == "running"
    assert (rows[0]["score"], rows[0]["score:Goalie"], rows[0]["score:Striker"]) == ("1", "1", "1")
    sweep.stop("grid-1")
    assert worker.wait(timeout=EXIT_S) == 0
