"""curves.png: the best points' learning curves over their seeds, their scores with their
intervals, and the scores by each swept value."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...queue.job import STOPPED
from ..ranking import CONFIDENCE, standing
from ..scores import Point
from .points import PointResult
from .tables import number_text, parameter_table

HIGHLIGHT = 3
FADED_MOST = 20  # other points drawn one by one up to this many; more are drawn as a band
SCORE_PANEL = 25  # points in the panel of scores with their intervals
MAX_BARS = 30  # values of a key shown as labelled bars; more are drawn as dots


def seed_band(
    curves: Sequence[Sequence[Point]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, min and max over a point's seeds, each seed interpolated within its range."""
    curves = [c for c in curves if c]
    steps = sorted({step for c in curves for step, _ in c})
    grid = np.asarray(steps, dtype=float)
    rows = []
    for curve in curves:
        xs = np.asarray([step for step, _ in curve], dtype=float)
        row = np.interp(grid, xs, [value for _, value in curve])
        row[(grid < xs[0]) | (grid > xs[-1])] = np.nan
        rows.append(row)
    if not rows:
        return [], [], [], []
    table = np.vstack(rows)
    # Every step is some seed's own step, so no column is all-NaN (a diverged seed's NaN
    # values aside, which numpy warns about and leaves out).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            steps,
            np.nanmean(table, axis=0).tolist(),
            np.nanmin(table, axis=0).tolist(),
            np.nanmax(table, axis=0).tolist(),
        )


def others_band(
    bands: Sequence[tuple[list[int], list[float]]], width: int = 100
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Steps, 10th percentile, median and 90th percentile of many points' mean curves, each
    interpolated over a common grid of `width` steps within its own range."""
    bands = [(steps, mean) for steps, mean in bands if steps]
    if not bands:
        return [], [], [], []
    grid = np.linspace(min(s[0] for s, _ in bands), max(s[-1] for s, _ in bands), width)
    rows = []
    for steps, mean in bands:
        row = np.interp(grid, steps, mean)
        row[(grid < steps[0]) | (grid > steps[-1])] = np.nan
        rows.append(row)
    table = np.vstack(rows)
    shown = np.isfinite(table).any(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, middle, high = np.nanpercentile(table[:, shown], [10, 50, 90], axis=0)
    return grid[shown].tolist(), low.tolist(), middle.tolist(), high.tolist()


def _curves_panel(
    ax: Any, points: list[PointResult], behavior: str, best: list[int], metric: str, colors: Any
) -> None:
    """The best points' mean curves in colour; the others faded, or as one band when many."""
    others = [p for p in points if p.point not in best]
    one_by_one = len(others) <= FADED_MOST
    drawn = [*(others if one_by_one else []), *(p for p in points if p.point in best)]
    for point in drawn:
        steps, mean, low, high = seed_band([r.curve(behavior) for r in point.runs])
        if not steps:
            continue
        color: Any = "0.65"
        width, zorder, label = 1.0, 2, None
        if point.point in best:
            place = best.index(point.point)
            color, width, zorder = colors(place), 2.4, 3
            label = f"#{place + 1} {point.name} ({number_text(point.score.mean)})"
        ax.plot(steps, mean, color=color, linewidth=width, zorder=zorder, label=label)
        if len(point.runs) > 1:
            ax.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
        for result in point.runs:
            curve = result.curve(behavior)
            if result.state.status == STOPPED and curve:
                ax.plot(*curve[-1], marker="x", color="crimson", markersize=8, zorder=4)
    if one_by_one:
        ax.plot([], [], color="0.65", label="other points")
    else:
        bands = [seed_band([r.curve(behavior) for r in p.runs])[:2] for p in others]
        grid, low, middle, high = others_band(bands)
        ax.fill_between(grid, low, high, color="0.6", alpha=0.3, linewidth=0, zorder=1)
        ax.plot(
            grid,
            middle,
            color="0.45",
            linestyle="--",
            linewidth=1,
            zorder=1,
            label=f"other {len(others):,} points: median, 10-90%",
        )
    ax.plot([], [], marker="x", color="crimson", linestyle="none", label="stopped early")
    ax.fill_between([], [], [], color="0.65", alpha=0.18, label="min-max over seeds")
    ax.set_title(f"{behavior}: {metric}, mean over seeds")
    ax.set_xlabel("step")
    ax.set_ylabel(metric.split("/")[-1])
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.8)


def _scores_panel(ax: Any, points: list[PointResult], best: list[int], colors: Any) -> None:
    """The best points' scores with their 95% intervals, in rank order."""
    shown = [p for p in points if p.score.mean is not None][:SCORE_PANEL]
    if not shown:
        ax.text(0.5, 0.5, "no point has a score yet", ha="center", va="center")
        ax.axis("off")
        return
    for x, point in enumerate(shown):
        mean = point.score.mean
        assert mean is not None
        color: Any = "0.45"
        if point.point in best:
            color = colors(best.index(point.point))
        elif point.score.diverged:
            color = "crimson"
        error = None
        if point.score.ci is not None:
            error = [[mean - point.score.ci[0]], [point.score.ci[1] - mean]]
        ax.errorbar(x, mean, yerr=error, fmt="o", color=color, capsize=3, markersize=5)
    if any(p.score.diverged for p in shown):
        ax.plot([], [], "o", color="crimson", label="has a diverged seed")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(shown)), [p.name for p in shown], rotation=60, fontsize=7)
    more = f", best {len(shown)} of {len(points):,}" if len(shown) < len(points) else ""
    ax.set_title(f"score by point{more}: mean, {CONFIDENCE:.0%} interval")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3, axis="y")


def _values_panel(ax: Any, key: str, table: list[tuple[str, float, float, int]]) -> None:
    """Mean and best point score per value: bars, or dots when the key has many values."""
    places = range(len(table))
    means = [m if math.isfinite(m) else 0 for _, m, _, _ in table]
    bests = [b if math.isfinite(b) else 0 for _, _, b, _ in table]
    if len(table) <= MAX_BARS:
        ax.bar(places, means, color="steelblue", label="mean point score")
        ax.scatter(places, bests, color="darkorange", zorder=3, label="best point score")
        ax.set_xticks(places, [value for value, _, _, _ in table], rotation=20, fontsize=8)
        ax.set_xlabel(key)
    else:
        ax.plot(places, means, ".", color="steelblue", markersize=3, label="mean point score")
        ax.plot(places, bests, ".", color="darkorange", markersize=3, label="best point score")
        ax.set_xlabel(f"{key}: {len(table):,} values, in planned order")
    ax.set_title(f"score by {key}")
    ax.set_ylabel("score")
    ax.legend(fontsize=8)


def figure(points: list[PointResult], behaviors: list[str], metric: str) -> Any:
    """Per behavior, the best points' mean curves over their seeds with min-max bands and the
    others faded (or as one band); the best points' scores with their intervals; per key,
    the scores by value. A matplotlib Figure, laid out in a grid of panels (`figure.axes`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = parameter_table(points)
    columns = max(len(behaviors) + 1, len(params))
    rows = 2 if params else 1
    # Laid out once, when saved ("tight"): laying out here as well would draw every text twice.
    drawn, axes = plt.subplots(
        rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False, layout="tight"
    )
    best = [p.point for p in points if standing(p.score) == 0][:HIGHLIGHT]
    colors = plt.get_cmap("tab10")
    for column, behavior in enumerate(behaviors):
        _curves_panel(axes[0][column], points, behavior, best, metric, colors)
    _scores_panel(axes[0][len(behaviors)], points, best, colors)
    for column in range(len(behaviors) + 1, columns):
        axes[0][column].axis("off")
    for column, (key, table) in enumerate(params.items()):
        _values_panel(axes[1][column], key, table)
    if params:
        for column in range(len(params), columns):
            axes[1][column].axis("off")
    return drawn


def plot(path: Path, points: list[PointResult], behaviors: list[str], metric: str) -> None:
    """`figure`, saved as a PNG."""
    import matplotlib.pyplot as plt

    drawn = figure(points, behaviors, metric)
    drawn.savefig(path, dpi=100)
    plt.close(drawn)
