"""The sweep's runs with their scores, gathered by grid point, best first.

A run's score for a behavior is the mean of the last K points of the primary metric; a
run's score is the mean of its behaviors' scores (scores.py, where a final run's metric is
read once and kept). A grid point's score is the mean of its seeds' scores (runs without
data do not count), with a 95% bootstrap interval from two scored seeds on (see
ranking.py). A seed whose score is NaN or infinite diverged: its point ranks below every
point whose seeds are all finite. Points without a scored seed rank last.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import GridError
from ...plan.grid import run_id_for
from ...queue.folder import Queue
from ...queue.job import STATUSES, Job, JobState
from ..ranking import PointScore, best_first, rank, score_points, standing
from ..ranking import conclusion as ranking_conclusion
from ..ranking import ties as find_ties
from ..scores import Point, RunMetrics, RunScore, ScoreBook, score_run
from ..status import started_states


@dataclass
class RunResult:
    job: Job
    state: JobState
    metrics: RunMetrics
    score: RunScore

    @property
    def steps(self) -> int:
        return self.metrics.steps

    def curve(self, behavior: str) -> tuple[Point, ...]:
        kept = self.metrics.series.get(behavior)
        return () if kept is None else kept.curve


def _run_order(result: RunResult) -> tuple[int, bool, float, int]:
    """Scored runs best first, then diverged ones, then runs without data."""
    group = 0 if result.score.value is not None else (1 if result.score.diverged else 2)
    return best_first(result.score.value, result.job.index, group)


def collect(queue: Queue, book: ScoreBook) -> list[RunResult]:
    """Every run with its metrics and score, best run first.

    Runs never started are not read; final runs come from their kept records. Raises
    GridError when a run's state cannot be read, or when the metric is no tag of any run
    that has data (naming the tags that exist).
    """
    states, errors = started_states(queue)
    if errors:
        raise GridError(next(iter(errors.values())))
    results = []
    for run_id in queue.sweep.run_ids:
        state = states.get(run_id)
        metrics = book.metrics(run_id, state)
        results.append(
            RunResult(
                queue.job(run_id),
                state or JobState(run_id),
                metrics,
                score_run(metrics, book.last),
            )
        )
    check_tag(book.tag, [r.metrics for r in results])
    results.sort(key=_run_order)
    return results


def check_tag(tag: str, metrics: Iterable[RunMetrics]) -> None:
    """A tag no run has, while runs have data under others, is a mistake: say which exist."""
    metrics = list(metrics)
    if any(m.series for m in metrics):
        return
    found = sorted(set().union(*(m.tags for m in metrics)))
    if not found:
        return
    close = difflib.get_close_matches(tag, found, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise GridError(
        f"--metric {tag!r}: no run has this tag{hint}; tags in the event files: " + ", ".join(found)
    )


@dataclass
class PointResult:
    """A grid point: its seeds' runs, their combined score and whether it ties the best."""

    name: str
    runs: list[RunResult]
    score: PointScore
    tied: bool | None = None

    @property
    def point(self) -> int:
        return self.score.point

    @property
    def job(self) -> Job:
        """The point's first run: every seed of a point has the same values."""
        return self.runs[0].job

    def status_counts(self) -> dict[str, int]:
        return {s: sum(r.state.status == s for r in self.runs) for s in STATUSES}

    def runs_text(self) -> str:
        counts = self.status_counts()
        text = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        return f"{text}; {self.score.diverged} diverged" if self.score.diverged else text

    @property
    def reason(self) -> str | None:
        """Why the point has no mean, or why it ranks below points with a lower one."""
        seeds = len(self.runs)
        match standing(self.score):
            case 1:
                return (
                    f"{self.score.diverged} of {seeds} seeds diverged (a NaN or infinite "
                    "score): ranked below every point whose seeds are all finite"
                )
            case 2:
                return "every seed with data diverged (a NaN or infinite score)"
            case 3:
                return "no seed has a score yet"
        return None


def group_points(results: list[RunResult], prefix: str) -> list[PointResult]:
    """The runs gathered by grid point, best point first, with ties to the best marked."""
    by_point: dict[int, list[RunResult]] = defaultdict(list)
    for result in sorted(results, key=lambda r: r.job.index):
        by_point[result.job.point].append(result)
    scores = score_points(
        {
            point: (
                [r.score.value for r in runs if r.score.value is not None],
                sum(r.score.diverged is not None for r in runs),
                [
                    r.state.status
                    for r in runs
                    if r.score.value is None and r.score.diverged is None
                ],
            )
            for point, runs in by_point.items()
        }
    )
    points = {
        point: PointResult(name=run_id_for(prefix, point), runs=runs, score=scores[point])
        for point, runs in by_point.items()
    }
    ranked = rank(list(scores.values()))
    tied = find_ties(ranked)
    for point in points.values():
        point.tied = tied[point.point]
    return [points[s.point] for s in ranked]


def recommended(points: list[PointResult]) -> PointResult | None:
    """The best point whose seeds are all finite, if any point has a score."""
    return points[0] if points and standing(points[0].score) == 0 else None


def conclusion(points: list[PointResult]) -> str:
    """One sentence saying whether the sweep separated a winner."""
    scores = [p.score for p in points]
    ties = {p.point: p.tied for p in points}
    return ranking_conclusion(scores, ties, points[0].name if points else "")


def flat_values(job: Job) -> dict[str, Any]:
    """A job's swept values keyed `owner.key` (`3DBall.learning_rate`)."""
    return {
        f"{owner}.{key}": value
        for owner, named in job.values.items()
        for key, value in named.items()
    }


def swept_keys(jobs: Iterable[Job]) -> list[str]:
    """Every swept key of these jobs, in the order they first appear."""
    return list(dict.fromkeys(k for job in jobs for k in flat_values(job)))
