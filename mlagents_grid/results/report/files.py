"""The report's files in one folder (report.md, leaderboard.csv, runs.csv, curves.png) and the
runs' sessions in TensorBoard's HParams dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...queue.folder import Queue
from ...queue.job import FINAL, PENDING
from ..scores import ScoreBook
from .plot import plot
from .points import PointResult, RunResult, group_points
from .tables import write_leaderboard, write_markdown, write_runs


@dataclass
class ReportFiles:
    results: list[RunResult]
    points: list[PointResult]
    markdown: Path
    csv: Path
    runs: Path
    plot: Path


def write_report(
    queue: Queue, results: list[RunResult], out: Path, metric: str, last: int
) -> ReportFiles:
    """report.md, leaderboard.csv, runs.csv and curves.png in `out` (see `points.collect`)."""
    points = group_points(results, queue.sweep.prefix)
    behaviors = queue.sweep.behavior_folders
    files = ReportFiles(
        results,
        points,
        out / "report.md",
        out / "leaderboard.csv",
        out / "runs.csv",
        out / "curves.png",
    )
    write_leaderboard(files.csv, points)
    write_runs(files.runs, results, behaviors)
    write_markdown(files.markdown, queue, points, metric, last)
    plot(files.plot, points, behaviors, metric)
    return files


def write_hparams(queue: Queue, results: list[RunResult], book: ScoreBook) -> None:
    """The HParams dashboard with every started run's status and score (hparams.py); a final
    run's session is written once for its score (usually by its worker: `final_score`)."""
    from .. import hparams
    from ..final_score import show_final

    hparams.write_experiment(queue, book.tag)
    for result in results:
        status = result.state.status
        if status in FINAL:
            show_final(queue, book, result.job, result.state, result.score.value, result.steps)
        elif status != PENDING:
            hparams.write_session(queue, result.job, status, result.score.value, result.steps)
