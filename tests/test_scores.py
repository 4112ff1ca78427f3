"""Run scores kept once final, diverged seeds, strict JSON and unknown metrics, through real
workers, and the scores panel of curves.png (reading event files and the conclusions are in
tests/unit/test_results.py)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.job import Job, JobState, Status
from mlagents_grid.results.metrics import DEFAULT_METRIC, EventFileReader
from mlagents_grid.results.report.plot import SCORE_PANEL, figure
from mlagents_grid.results.report.points import RunResult, group_points
from mlagents_grid.results.scores import Kept, RunMetrics, score_run

from .conftest import run_cli, tree
from .support.sweep import Sweep

GENEROUS_S = 90  # 3-4x what a quiet machine needs
LOSS = "Losses/Policy Loss"


def strict(text: str) -> Any:
    """JSON as a strict parser reads it: a bare NaN or Infinity is an error."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def finish(sweep: Sweep, workers: int = 2) -> None:
    started = [sweep.start_worker() for _ in range(workers)]
    for worker in started:
        assert worker.wait(timeout=GENEROUS_S) == 0, sweep.output(worker)


def fresh_score(sweep: Sweep, run_id: str, last: int = 5) -> float | None:
    """A run's score computed here from its event files, without the tool's records."""
    source = EventFileReader(sweep.root / "results")
    source.refresh([f"{run_id}/3DBall"])
    values = [p.value for p in source.series(f"{run_id}/3DBall", DEFAULT_METRIC)[-last:]]
    return sum(values) / len(values) if values else None


# -- kept scores -------------------------------------------------------------------------------
def test_a_final_runs_score_is_kept_by_its_worker_and_no_report_reads_its_event_files(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=8,
        options={
            "default": {"step_delay": 0},
            "runs": {
                "grid-0": {"curve": {"*": [1, 2, 3, 4, 5, 6, 7, 8]}},
                "grid-1": {"curve": {"*": [0.5, 9, 2.25]}},
                "grid-2": {"curve": {"*": [4]}, "crash": 3},
            },
        },
    )
    finish(sweep)
    queue = ["--queue", str(sweep.queue_dir)]
    expected = {run_id: fresh_score(sweep, run_id) for run_id in ("grid-0", "grid-1", "grid-2")}
    for run_id in expected:  # kept by the worker that ended the run, before any report
        kept = json.loads(sweep.queue.paths.score_file(run_id).read_text())
        assert kept["final"]["status"] == sweep.statuses()[run_id]
        assert kept["session"] == [DEFAULT_METRIC, 5]
    sessions = {
        run_id: [p.stat().st_mtime_ns for p in (sweep.root / "results" / run_id).iterdir()]
        for run_id in expected
    }
    # Without the event files, the first report scores every final run all the same.
    (sweep.root / "results").rename(sweep.root / "results-away")
    (sweep.root / "results").mkdir()
    first = run_cli(cli.report_command, "grid-report", [*queue, "--json"])
    assert first.code == 0, first.err
    assert {p["name"]: p["mean"] for p in strict(first.out)} == pytest.approx(expected)
    rows = list(csv.DictReader((sweep.queue_dir / "report" / "runs.csv").open()))
    assert {r["run_id"]: r["steps"] for r in rows} == {"grid-0": "8", "grid-1": "8", "grid-2": "1"}
    status = strict(run_cli(cli.status_command, "grid-status", [*queue, "--json"]).out)
    assert {r["run_id"]: r["score"] for r in status["runs"]} == pytest.approx(expected)
    assert {r["run_id"]: r["metric"] for r in status["runs"]} == {
        "grid-0": 8.0,
        "grid-1": 2.25,
        "grid-2": 4.0,
    }
    shutil.rmtree(sweep.root / "results")
    (sweep.root / "results-away").rename(sweep.root / "results")
    # Each final run's HParams session, with its score, was written by its worker: a report
    # writes it again only for another --metric or --last.
    again = run_cli(cli.report_command, "grid-report", queue)
    assert again.code == 0, again.err
    for run_id, stamps in sessions.items():
        after = [p.stat().st_mtime_ns for p in (sweep.root / "results" / run_id).iterdir()]
        assert after == stamps
    other = run_cli(cli.report_command, "grid-report", [*queue, "--last", "2"])
    assert other.code == 0, other.err
    changed = [p.stat().st_mtime_ns for p in (sweep.root / "results" / "grid-0").iterdir()]
    assert changed != sessions["grid-0"]


def test_a_run_retried_after_it_was_scored_is_scored_afresh(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=2,
        ticks=6,
        options={
            "default": {"step_delay": 0, "curve": {"*": [1, 2, 3, 4, 5, 6]}},
            "runs": {
                "grid-1": {"curve": {"*": [7, 8, 9, 10, 11, 12]}, "crash": 3, "crash_times": 1}
            },
        },
        plan_args=("--max-attempts", "1"),
    )
    finish(sweep)
    queue = ["--queue", str(sweep.queue_dir)]
    first = strict(run_cli(cli.report_command, "grid-report", [*queue, "--json"]).out)
    assert {p["name"]: p["mean"] for p in first} == {"grid-0": 4.0, "grid-1": 7.0}
    kept = json.loads(sweep.queue.paths.score_file("grid-1").read_text())
    assert kept["final"]["status"] == "failed"
    retried = run_cli(cli.retry_command, "grid-retry", [*queue, "grid-1"])
    assert retried.code == 0, retried.err
    finish(sweep, workers=1)
    assert sweep.statuses()["grid-1"] == "done"
    again = strict(run_cli(cli.report_command, "grid-report", [*queue, "--json"]).out)
    means = {p["name"]: p["mean"] for p in again}
    assert means["grid-1"] == pytest.approx(fresh_score(sweep, "grid-1"))
    assert means["grid-1"] == pytest.approx(10.0)  # steps 2-6 of its second attempt
    kept = json.loads(sweep.queue.paths.score_file("grid-1").read_text())
    assert (kept["final"]["status"], kept["final"]["retries"]) == ("done", 1)


# -- diverged seeds ----------------------------------------------------------------------------
def test_diverged_seeds_rank_below_finite_points_and_every_json_is_strict(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    curves = {
        "grid-0-s0": [5.0],
        "grid-0-s1": [math.nan],
        "grid-0-s2": [math.inf],
        "grid-1-s0": [3.0],
        "grid-1-s1": [3.5],
        "grid-1-s2": [2.5],
    }
    sweep = new_sweep(
        tmp_path,
        runs=2,
        ticks=3,
        plan_args=("--seeds", "3"),
        options={
            "default": {"step_delay": 0},
            "runs": {run_id: {"curve": {"*": curve}} for run_id, curve in curves.items()},
        },
    )
    finish(sweep)
    queue = ["--queue", str(sweep.queue_dir)]
    result = run_cli(cli.report_command, "grid-report", [*queue, "--json"])
    assert result.code == 0, result.err
    points = strict(result.out)
    assert [p["name"] for p in points] == ["grid-1", "grid-0"]
    assert points[0]["mean"] == pytest.approx(3.0) and points[0]["reason"] is None
    assert (points[1]["mean"], points[1]["seeds"], points[1]["diverged"]) == (5.0, 1, 2)
    assert points[1]["reason"].startswith("2 of 3 seeds diverged (a NaN or infinite score)")
    assert points[1]["tied"] is None
    markdown = (sweep.queue_dir / "report" / "report.md").read_text()
    assert "## Best configuration: grid-1 (score 3)" in markdown
    assert "1 point with a diverged seed (a NaN or infinite score) ranks below every point" in (
        markdown
    )
    assert "| grid-0-s1 | grid-0 | 1 | diverged (NaN in 3DBall at step 1) | done |" in markdown
    assert "| grid-0-s2 | grid-0 | 2 | diverged (inf in 3DBall at step 1) | done |" in markdown
    leaderboard = list(csv.DictReader((sweep.queue_dir / "report" / "leaderboard.csv").open()))
    assert [(r["point"], r["diverged"]) for r in leaderboard] == [("1", "0"), ("0", "2")]
    runs = {
        r["run_id"]: r for r in csv.DictReader((sweep.queue_dir / "report" / "runs.csv").open())
    }
    assert runs["grid-0-s1"]["score"] == "" and runs["grid-0-s1"]["diverged"].startswith("NaN")

    status = run_cli(cli.status_command, "grid-status", [*queue, "--json"])
    rows = {r["run_id"]: r for r in strict(status.out)["runs"]}
    assert rows["grid-0-s1"]["metric"] is None and rows["grid-0-s1"]["score"] is None
    assert rows["grid-0-s1"]["metric_reason"] == "diverged: NaN in 3DBall at step 1"
    assert rows["grid-0-s2"]["metric_reason"] == "diverged: inf in 3DBall at step 1"
    assert rows["grid-0-s2"]["metrics"] == {"3DBall": None}
    assert rows["grid-0-s0"]["metric_reason"] is None and rows["grid-0-s0"]["metric"] == 5.0
    table = run_cli(cli.status_command, "grid-status", [*queue, "--all"]).out
    line = next(line for line in table.splitlines() if line.startswith("grid-0-s1 "))
    assert "diverged" in line and "NaN in 3DBall at step 1" in line


# -- an unknown metric -------------------------------------------------------------------------
def test_an_unknown_metric_is_named_with_the_tags_that_exist(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2, ticks=3, options={"default": {"step_delay": 0}})
    finish(sweep)
    before = tree(sweep.queue_dir)
    result = run_cli(
        cli.report_command,
        "grid-report",
        ["--queue", str(sweep.queue_dir), "--metric", "Environment/Cumulative Rewrd"],
    )
    assert result.code == 2
    assert result.err == (
        "grid-report: --metric 'Environment/Cumulative Rewrd': no run has this tag (did you "
        "mean 'Environment/Cumulative Reward'?); tags in the event files: "
        f"{DEFAULT_METRIC}, {LOSS}\n"
    )
    assert tree(sweep.queue_dir) == before  # no report, no kept score
    other = run_cli(
        cli.report_command, "grid-report", ["--queue", str(sweep.queue_dir), "--metric", LOSS]
    )
    assert other.code == 0, other.err


def test_a_sweep_without_data_is_no_unknown_metric(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    result = run_cli(
        cli.report_command, "grid-report", ["--queue", str(sweep.queue_dir), "--metric", "x/y"]
    )
    assert result.code == 0, result.err
    assert "No run has data yet" in result.out


# -- curves.png --------------------------------------------------------------------------------
def run_result(point: int, seed: int, value: float, diverged: bool = False) -> RunResult:
    run_id = f"g-{point}-s{seed}"
    job = Job(run_id, point * 2 + seed, {"3DBall": {"beta": point}}, (), (), point, seed)
    curve = [(step, value + step / 10) for step in range(1, 11)]
    if diverged:
        curve[-1] = (10, math.nan)
    metrics = RunMetrics(frozenset({DEFAULT_METRIC}), {"3DBall": Kept.of_pairs(curve)})
    return RunResult(job, JobState(run_id, status=Status.DONE), metrics, score_run(metrics, 5))


def test_curves_png_shows_each_points_score_with_its_interval_and_bands_the_many_others() -> None:
    results = [
        run_result(point, seed, float(point) + seed * 0.5, diverged=point == 39 and seed == 0)
        for point in range(40)
        for seed in range(2)
    ]
    points = group_points(results, "g")
    drawn = figure(points, ["3DBall"], DEFAULT_METRIC)
    curves, scores = drawn.axes[0], drawn.axes[1]
    shown = [p for p in points if p.score.mean is not None][:SCORE_PANEL]
    assert [t.get_text() for t in scores.get_xticklabels()] == [p.name for p in shown]
    bars = scores.containers
    assert len(bars) == len(shown)
    for bar, point in zip(bars, shown, strict=True):
        _, (y,) = bar.lines[0].get_data()
        assert y == pytest.approx(point.score.mean)
        if point.score.ci is not None:
            segment = bar.lines[2][0].get_segments()[0]
            assert [low for _, low in segment[:1]] + [high for _, high in segment[1:]] == (
                pytest.approx(list(point.score.ci))
            )
    assert scores.get_title() == "score by point, best 25 of 40: mean, 95% interval"
    labels = [t.get_text() for t in curves.get_legend().get_texts()]
    best = [f"#{i + 1} {p.name} ({p.score.mean:.4g})" for i, p in enumerate(points[:3])]
    assert labels[:3] == best
    assert "other 37 points: median, 10-90%" in labels
    import matplotlib.pyplot as plt

    plt.close(drawn)
