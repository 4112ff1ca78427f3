"""What the sweep found: grid points ranked by score, which values matter, and the curves.

A run's score for a behavior is the mean of the last K points of the primary metric; a
run's score is the mean of its behaviors' scores. A grid point's score is the mean of its
seeds' scores (runs without data do not count), with a 95% bootstrap interval from two
scored seeds on (see ranking.py). Points without a scored seed rank last.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .job import PENDING, STATUSES, Job, JobState
from .metrics import EventFileSource, Scalar, tensorboard_run
from .planner import format_value
from .queue import Queue
from .ranking import CONFIDENCE, IQM_MIN_SEEDS, RESAMPLES, PointScore, rank, score_point
from .ranking import ties as find_ties
from .ranking import verdict as ranking_verdict
from .seeds import point_assignments

DEFAULT_LAST = 5
HIGHLIGHT = 3


@dataclass
class RunResult:
    job: Job
    state: JobState
    curves: dict[str, list[Scalar]]
    behavior_scores: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        scores = list(self.behavior_scores.values())
        return statistics.fmean(scores) if scores else None

    @property
    def steps(self) -> int:
        return max((points[-1].step for points in self.curves.values() if points), default=0)


def score_points(points: list[Scalar], last: int) -> float | None:
    tail = [p.value for p in points[-last:] if math.isfinite(p.value)]
    return statistics.fmean(tail) if tail else None


def collect(queue: Queue, metric: str, last: int) -> list[RunResult]:
    """Every run with its curves and scores, best run first."""
    source = EventFileSource(Path(queue.sweep.results_dir))
    folders = queue.sweep.behavior_folders
    results = []
    runs = {run_id: [tensorboard_run(run_id, b) for b in folders] for run_id in queue.sweep.run_ids}
    source.refresh([name for names in runs.values() for name in names])
    for run_id, names in runs.items():
        curves = {b: source.series(name, metric) for b, name in zip(folders, names, strict=True)}
        result = RunResult(queue.job(run_id), queue.effective(queue.read_state(run_id)), curves)
        for behavior, points in curves.items():
            value = score_points(points, last)
            if value is not None:
                result.behavior_scores[behavior] = value
        results.append(result)
    results.sort(key=lambda r: (r.score is None, -(r.score or 0.0), r.job.index))
    return results


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
        return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def group_points(results: list[RunResult], prefix: str) -> list[PointResult]:
    """The runs gathered by grid point, best point first, with ties to the best marked."""
    by_point: dict[int, list[RunResult]] = defaultdict(list)
    for result in sorted(results, key=lambda r: r.job.index):
        by_point[result.job.point].append(result)
    points = {
        point: PointResult(
            name=f"{prefix}-{point}",
            runs=runs,
            score=score_point(point, [r.score for r in runs if r.score is not None]),
        )
        for point, runs in by_point.items()
    }
    ranked = rank([p.score for p in points.values()])
    tied = find_ties(ranked)
    for point in points.values():
        point.tied = tied[point.point]
    return [points[s.point] for s in ranked]


def verdict(points: list[PointResult]) -> str:
    """One sentence saying whether the sweep separated a winner."""
    scores = [p.score for p in points]
    ties = {p.point: p.tied for p in points}
    return ranking_verdict(scores, ties, points[0].name if points else "")


def _flat_values(job: Job) -> dict[str, Any]:
    return {
        f"{owner}.{key}": value
        for owner, named in job.values.items()
        for key, value in named.items()
    }


def _keys(jobs: Iterable[Job]) -> list[str]:
    """Every swept key of these jobs, in the order they first appear."""
    return list(dict.fromkeys(k for job in jobs for k in _flat_values(job)))


def best_config_snippet(job: Job) -> str:
    """The winning values placed where they go in a trainer config, ready to paste."""
    tree: dict[Any, Any] = {}
    for path, value in point_assignments(job):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def parameter_table(points: list[PointResult]) -> dict[str, list[tuple[str, float, float, int]]]:
    """For each swept key: (value, mean score, best score, scored points) per value."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: dict[str, list[str]] = defaultdict(list)
    for point in sorted(points, key=lambda p: p.point):
        for key, value in _flat_values(point.job).items():
            text = format_value(value)
            if text not in order[key]:
                order[key].append(text)
            if point.score.mean is not None:
                table[key][text].append(point.score.mean)
    return {
        key: [
            (
                text,
                statistics.fmean(table[key][text]) if table[key][text] else math.nan,
                max(table[key][text]) if table[key][text] else math.nan,
                len(table[key][text]),
            )
            for text in texts
        ]
        for key, texts in order.items()
    }


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _tied_text(tied: bool | None) -> str:
    return "" if tied is None else ("yes" if tied else "no")


def point_records(points: list[PointResult]) -> list[dict[str, Any]]:
    """The ranked points as `grid-report --json` prints them (null where there is no value)."""
    return [
        {
            "rank": rank_,
            "point": p.point,
            "name": p.name,
            "values": p.job.values,
            "mean": p.score.mean,
            "ci_low": None if p.score.ci is None else p.score.ci[0],
            "ci_high": None if p.score.ci is None else p.score.ci[1],
            "iqm": p.score.iqm,
            "seeds": len(p.score.scores),
            "tied": p.tied,
            "runs": p.status_counts(),
            "run_ids": [r.job.run_id for r in p.runs],
        }
        for rank_, p in enumerate(points, 1)
    ]


def write_leaderboard(path: Path, points: list[PointResult]) -> None:
    """One row per grid point, best first."""
    keys = _keys(p.job for p in points)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "rank",
                "point",
                *keys,
                "mean",
                "ci_low",
                "ci_high",
                "iqm",
                "seeds",
                "tied",
                *[f"runs:{s}" for s in STATUSES],
                "run_ids",
            ]
        )
        for record, point in zip(point_records(points), points, strict=True):
            values = _flat_values(point.job)
            writer.writerow(
                [
                    record["rank"],
                    point.point,
                    *[format_value(values[k]) if k in values else "" for k in keys],
                    _number(record["mean"]),
                    _number(record["ci_low"]),
                    _number(record["ci_high"]),
                    _number(record["iqm"]),
                    record["seeds"],
                    _tied_text(point.tied),
                    *record["runs"].values(),
                    " ".join(record["run_ids"]),
                ]
            )


def write_runs(path: Path, results: list[RunResult], behaviors: list[str]) -> None:
    """One row per run, best run first: what each seed did."""
    keys = _keys(r.job for r in results)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "rank",
                "run_id",
                "point",
                "seed",
                "score",
                *[f"score:{b}" for b in behaviors],
                "status",
                "steps",
                "stop_reason",
                *keys,
            ]
        )
        for rank_, result in enumerate(results, 1):
            values = _flat_values(result.job)
            writer.writerow(
                [
                    rank_,
                    result.job.run_id,
                    result.job.point,
                    "" if result.job.seed is None else result.job.seed,
                    _number(result.score),
                    *[_number(result.behavior_scores.get(b)) for b in behaviors],
                    result.state.status,
                    result.steps,
                    result.state.stop_reason or "",
                    *[format_value(values[k]) if k in values else "" for k in keys],
                ]
            )


def _interval_text(point: PointResult) -> str:
    ci = point.score.ci
    return "-" if ci is None else f"[{_number(ci[0])}, {_number(ci[1])}]"


def write_markdown(
    path: Path, queue: Queue, points: list[PointResult], metric: str, last: int
) -> None:
    keys = _keys(p.job for p in points)
    lines = [
        f"# Sweep report: {queue.sweep.prefix}",
        "",
        f"Score: the mean of the last {last} points of `{metric}` for each behavior, averaged "
        "over the run's behaviors. A grid point's score is the mean over its seeds' scores; "
        "runs still training count with what they have, seeds without data do not count, and "
        "points without a scored seed rank last.",
        "",
        f"Interval: the {CONFIDENCE:.0%} percentile bootstrap interval of that mean "
        f"({RESAMPLES:,} resamples, fixed resampling seed), from 2 scored seeds; IQM: the "
        f"interquartile mean of the seeds' scores, from {IQM_MIN_SEEDS}. A point is tied with "
        "the best when their intervals overlap.",
        "",
        f"**{verdict(points)}**",
        "",
        "| rank | point | "
        + " | ".join(keys)
        + f" | mean | {CONFIDENCE:.0%} interval | IQM | seeds | tied with the best | runs |",
        "|---:|---|" + "---|" * len(keys) + "---:|---|---:|---:|---|---|",
    ]
    for rank_, point in enumerate(points, 1):
        values = _flat_values(point.job)
        cells = [format_value(values[k]) if k in values else "" for k in keys]
        lines.append(
            f"| {rank_} | {point.name} | "
            + " | ".join(cells)
            + f" | {_number(point.score.mean) or '-'} | {_interval_text(point)} "
            f"| {_number(point.score.iqm) or '-'} | {len(point.score.scores)} "
            f"| {_tied_text(point.tied) or '-'} | {point.runs_text()} |"
        )
    best = points[0] if points and points[0].score.mean is not None else None
    if best is not None:
        lines += [
            "",
            f"## Best configuration: {best.name} (score {_number(best.score.mean)})",
            "",
            "```yaml",
            best_config_snippet(best.job).rstrip(),
            "```",
        ]
    lines += rung_history(queue)
    lines += ["", "## Which values matter", ""]
    for key, rows in parameter_table(points).items():
        lines += [
            f"### {key}",
            "",
            "| value | mean score | best score | points |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {v} | {_number(m)} | {_number(b)} | {n} |" for v, m, b, n in rows]
        lines.append("")
    lines += [
        "## Runs",
        "",
        "| run | point | seed | score | status | steps | stop reason |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for point in points:
        for result in point.runs:
            seed = "" if result.job.seed is None else result.job.seed
            lines.append(
                f"| {result.job.run_id} | {point.name} | {seed} | {_number(result.score)} "
                f"| {result.state.status} | {result.steps} | {result.state.stop_reason or ''} |"
            )
    lines += ["", "![learning curves](curves.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def rung_history(queue: Queue) -> list[str]:
    """Which grid points each rung promoted, with their scores (rungs/<n>.json)."""
    rungs = queue.sweep.rung_plan
    if rungs is None:
        return []
    lines = [
        "",
        "## Rungs",
        "",
        f"Successive halving: at each rung a point's score is the mean of the last "
        f"{rungs.window} points of `{rungs.tag}` at or before the rung's step (mean over "
        f"behaviors and seeds); the best {rungs.keep:.3g} of the points are promoted.",
    ]
    decisions = queue.rung_decisions()
    for number, step in enumerate(rungs.steps, 1):
        decision = decisions.get(number)
        if decision is None:
            lines += ["", f"### Rung {number} (step {step}): not decided yet"]
            continue
        lines += [
            "",
            f"### Rung {number} (step {step}): {len(decision.promoted)} of "
            f"{len(decision.verdicts)} points promoted, cut {_number(decision.cut) or 'none'}",
            "",
            "| rank | point | runs | score | promoted | values |",
            "|---:|---:|---|---:|---|---|",
        ]
        for verdict in decision.verdicts:
            values = ""
            if verdict.runs:
                flat = _flat_values(queue.job(verdict.runs[0]))
                values = ", ".join(f"{k}={format_value(v)}" for k, v in flat.items())
            outcome = "yes" if verdict.promoted else ("no" if verdict.eligible else "final before")
            lines.append(
                f"| {verdict.rank} | {verdict.point} | {' '.join(verdict.runs)} "
                f"| {_number(verdict.score)} | {outcome} | {values} |"
            )
    return lines


def seed_band(
    curves: list[list[Scalar]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, min and max over a point's seeds, each seed interpolated within its range."""
    curves = [c for c in curves if c]
    steps = sorted({p.step for c in curves for p in c})
    grid = np.asarray(steps, dtype=float)
    rows = []
    for curve in curves:
        xs = np.asarray([p.step for p in curve], dtype=float)
        row = np.interp(grid, xs, [p.value for p in curve])
        row[(grid < xs[0]) | (grid > xs[-1])] = np.nan
        rows.append(row)
    if not rows:
        return [], [], [], []
    table = np.vstack(rows)
    # Every step is some seed's own step, so no column is all-NaN.
    return (
        steps,
        np.nanmean(table, axis=0).tolist(),
        np.nanmin(table, axis=0).tolist(),
        np.nanmax(table, axis=0).tolist(),
    )


def plot(path: Path, points: list[PointResult], behaviors: list[str], metric: str) -> None:
    """Per behavior, each point's mean curve over its seeds with a min-max band; per key, bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = parameter_table(points)
    columns = max(len(behaviors), len(params), 1)
    rows = 2 if params else 1
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    best = [p.point for p in points if p.score.mean is not None][:HIGHLIGHT]
    colors = plt.get_cmap("tab10")
    for column, behavior in enumerate(behaviors):
        ax = axes[0][column]
        for point in sorted(points, key=lambda p: p.point in best):
            steps, mean, low, high = seed_band([r.curves.get(behavior, []) for r in point.runs])
            if not steps:
                continue
            color: Any = "0.65"
            width, zorder, label = 1.0, 2, None
            if point.point in best:
                place = best.index(point.point)
                color, width, zorder = colors(place), 2.4, 3
                label = f"#{place + 1} {point.name} ({_number(point.score.mean)})"
            ax.plot(steps, mean, color=color, linewidth=width, zorder=zorder, label=label)
            if len(point.runs) > 1:
                ax.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
            for result in point.runs:
                curve = result.curves.get(behavior, [])
                if result.state.status == "stopped" and curve:
                    ax.plot(
                        curve[-1].step,
                        curve[-1].value,
                        marker="x",
                        color="crimson",
                        markersize=8,
                        zorder=4,
                    )
        ax.plot([], [], marker="x", color="crimson", linestyle="none", label="stopped early")
        ax.plot([], [], color="0.65", label="other points")
        ax.fill_between([], [], [], color="0.65", alpha=0.18, label="min-max over seeds")
        ax.set_title(f"{behavior}: {metric}, mean over seeds")
        ax.set_xlabel("step")
        ax.set_ylabel(metric.split("/")[-1])
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    for column in range(len(behaviors), columns):
        axes[0][column].axis("off")
    if params:
        for column, (key, table) in enumerate(params.items()):
            ax = axes[1][column]
            labels = [value for value, _, _, _ in table]
            ax.bar(
                range(len(table)),
                [m if math.isfinite(m) else 0 for _, m, _, _ in table],
                color="steelblue",
                label="mean point score",
            )
            ax.scatter(
                range(len(table)),
                [b if math.isfinite(b) else 0 for _, _, b, _ in table],
                color="darkorange",
                zorder=3,
                label="best point score",
            )
            ax.set_xticks(range(len(table)), labels, rotation=20, fontsize=8)
            ax.set_title(f"score by {key}")
            ax.set_xlabel(key)
            ax.set_ylabel("score")
            ax.legend(fontsize=8)
        for column in range(len(params), columns):
            axes[1][column].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass
class ReportFiles:
    results: list[RunResult]
    points: list[PointResult]
    markdown: Path
    csv: Path
    runs: Path
    plot: Path


def write_report(queue: Queue, out: Path, metric: str, last: int) -> ReportFiles:
    results = collect(queue, metric, last)
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


def write_hparams(queue: Queue, results: list[RunResult], metric: str) -> None:
    """The HParams dashboard with every started run's status and score (hparams.py)."""
    from . import hparams

    hparams.write_experiment(queue, metric)
    for result in results:
        if result.state.status != PENDING:
            hparams.write_session(
                queue, result.job, result.state.status, result.score, result.steps
            )


def summary_lines(points: list[PointResult], metric: str, last: int, top: int = 5) -> list[str]:
    lines = [f"Top grid points by the mean over seeds of the last {last} points of {metric}:"]
    for rank_, point in enumerate(points[:top], 1):
        values = ", ".join(f"{k}={format_value(v)}" for k, v in _flat_values(point.job).items())
        lines.append(
            f"  {rank_}. {point.name:<14} {_number(point.score.mean) or '-':>10} "
            f"{_interval_text(point):>22}  {point.runs_text():<18} {values}"
        )
    lines.append(verdict(points))
    return lines
