"""Grid points ranked by their seeds' scores, with reproducible 95% bootstrap intervals.

Pure functions: scores in, rankings out. The statistics are scipy's (`stats.bootstrap`,
`stats.trim_mean`), computed with numpy and tested equal to scipy's; the fixed resampling
seed makes the same scores give the same report every time.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..queue.job import FINAL

CONFIDENCE = 0.95
RESAMPLES = 9_999
BOOTSTRAP_SEED = 0  # every point's resampling starts from this seed: reproducible reports
IQM_MIN_SEEDS = 4  # below this, trimming a quarter from each end leaves too little
_BLOCK = 64  # samples bootstrapped together: 64 x 9,999 resamples x seeds x 8 bytes


@dataclass(frozen=True)
class PointScore:
    """A grid point's seeds' scores and what they say together.

    `scores` are the finite ones; `diverged` counts seeds whose score is NaN or infinite;
    `unscored` holds the statuses of the seeds without a score yet.
    """

    point: int
    scores: tuple[float, ...]
    mean: float | None
    ci: tuple[float, float] | None
    iqm: float | None
    diverged: int = 0
    unscored: tuple[str, ...] = ()


def best_first(score: float | None, order: int, group: int = 0) -> tuple[int, bool, float, int]:
    """The sort key of every ranking here: lower `group` first, then the highest score, then
    no score; equal scores in `order` (a grid point's or a run's number)."""
    return group, score is None, -(score or 0.0), order


def bootstrap_interval(scores: Sequence[float]) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean; None below two scores."""
    if len(scores) < 2:
        return None
    return bootstrap_intervals([scores])[0]


def bootstrap_intervals(samples: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The intervals of samples of one size (two or more), a block of rows at a time.

    scipy's `stats.bootstrap` (percentile method) computed with numpy alone: the same
    resampled indices from the same seed for every row, the same means and quantiles, so
    each interval is exactly scipy's for that sample on its own (tests/unit/test_results.py
    holds them equal). Importing scipy.stats costs more CPU than a 1,000-run report.
    """
    import numpy as np  # here: the monitor and grid-status rank rungs without numpy

    alpha = (1 - CONFIDENCE) / 2
    size = len(samples[0]) if samples else 0
    drawn = np.random.default_rng(BOOTSTRAP_SEED).integers(0, size, (RESAMPLES, size))
    found: list[tuple[float, float]] = []
    for start in range(0, len(samples), _BLOCK):
        block = np.asarray(samples[start : start + _BLOCK], dtype=float)
        means = np.mean(block[..., drawn], axis=-1)
        low, high = np.quantile(means, [alpha, 1 - alpha], axis=-1)
        found += [(float(a), float(b)) for a, b in zip(low, high, strict=True)]
    return found


def interquartile_means(samples: Sequence[Sequence[float]]) -> list[float]:
    """The mean of each sample's middle half, as `scipy.stats.trim_mean(sample, 0.25)`:
    int(n / 4) scores cut from each end of the sorted sample."""
    import numpy as np

    block = np.sort(np.asarray(samples, dtype=float), axis=-1)
    cut = int(0.25 * block.shape[-1])
    return [float(x) for x in np.mean(block[:, cut : block.shape[-1] - cut], axis=-1)]


def score_point(
    point: int, scores: Sequence[float], diverged: int = 0, unscored: Sequence[str] = ()
) -> PointScore:
    """Mean, interval (2+ scores) and interquartile mean (4+ scores, Agarwal et al. 2021)."""
    return score_points({point: (scores, diverged, unscored)})[point]


def score_points(
    points: Mapping[int, tuple[Sequence[float], int, Sequence[str]]],
) -> dict[int, PointScore]:
    """`score_point` for many points: {point: (finite scores, diverged, unscored statuses)};
    the intervals of points with as many scores are computed together."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for point, (scores, _, _) in points.items():
        if len(scores) >= 2:
            by_size[len(scores)].append(point)
    intervals: dict[int, tuple[float, float]] = {}
    iqms: dict[int, float] = {}
    for size, group in by_size.items():
        samples = [points[p][0] for p in group]
        intervals.update(zip(group, bootstrap_intervals(samples), strict=True))
        if size >= IQM_MIN_SEEDS:
            iqms.update(zip(group, interquartile_means(samples), strict=True))
    return {
        point: PointScore(
            point=point,
            scores=tuple(scores),
            mean=statistics.fmean(scores) if scores else None,
            ci=intervals.get(point),
            iqm=iqms.get(point),
            diverged=diverged,
            unscored=tuple(unscored),
        )
        for point, (scores, diverged, unscored) in points.items()
    }


def standing(point: PointScore) -> int:
    """0: every scored seed finite; 1: a seed diverged, others scored; 2: every seed with
    data diverged; 3: no data. A lower standing always ranks first."""
    if point.diverged:
        return 1 if point.mean is not None else 2
    return 0 if point.mean is not None else 3


def rank(points: Sequence[PointScore]) -> list[PointScore]:
    """Best mean first among points whose seeds are all finite; then points with a diverged
    seed, then points without a scored seed; equal means in point order."""
    return sorted(points, key=lambda p: best_first(p.mean, p.point, standing(p)))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def ties(ranked: Sequence[PointScore]) -> dict[int, bool | None]:
    """Which points are tied with the best: their intervals overlap the best one's.

    The best is tied when any other point is. None where it cannot be told: no score, no
    interval on either side, or a diverged seed (such a point is never a candidate).
    """
    tied: dict[int, bool | None] = {p.point: None for p in ranked}
    best = ranked[0] if ranked and standing(ranked[0]) == 0 else None
    if best is None or best.ci is None:
        return tied
    for other in ranked[1:]:
        if standing(other) == 0 and other.ci is not None:
            tied[other.point] = _overlap(best.ci, other.ci)
    known = [tied[p.point] for p in ranked[1:] if tied[p.point] is not None]
    tied[best.point] = any(known)
    return tied


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _by_status(statuses: Sequence[str]) -> str:
    counts = Counter(statuses)
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def missing_seeds(point: PointScore) -> str:
    """What a point's interval waits for: seeds still to report, or seeds that never will."""
    waiting = [s for s in point.unscored if s not in FINAL]
    ended = [s for s in point.unscored if s in FINAL]
    parts = []
    if waiting:
        parts.append(f"wait for its other {_plural(len(waiting), 'seed')} ({_by_status(waiting)})")
    if ended:
        parts.append(
            f"its other {_plural(len(ended), 'seed')} ended without a score "
            f"({_by_status(ended)}): retry {'it' if len(ended) == 1 else 'them'} with "
            "grid-retry, or add seeds with grid-plan --extend --seeds"
        )
    if not parts:
        parts.append("it has no other seed: add seeds with grid-plan --extend --seeds")
    return "; ".join(parts)


def conclusion(ranked: Sequence[PointScore], tied: dict[int, bool | None], name: str) -> str:
    """One sentence (two with diverged seeds): did the sweep separate a winner? `name` is
    the name of the first ranked point."""
    diverged = [p for p in ranked if p.diverged]
    note = ""
    if diverged:
        note = (
            f" {_plural(len(diverged), 'point')} with a diverged seed (a NaN or infinite "
            f"score) {'ranks' if len(diverged) == 1 else 'rank'} below every point whose "
            "seeds are all finite."
        )
    scored = [p for p in ranked if standing(p) == 0]
    if not scored:
        if diverged:
            return (
                "Every point with data has a diverged seed (a NaN or infinite score), so "
                "none is recommended."
            )
        return "No run has data yet, so no point can be ranked."
    best = scored[0]
    if len(scored) == 1:
        return f"Only point {name} has a score so far: nothing to compare it with yet.{note}"
    if all(len(p.scores) + len(p.unscored) < 2 for p in scored):
        return (
            "No 95% intervals: one seed per point, so the ranking cannot tell real differences "
            f"from luck; plan with --seeds 3 or more to see which differences hold.{note}"
        )
    if best.ci is None:
        return (
            f"Point {name} leads with one scored seed, so it has no 95% interval yet; "
            f"{missing_seeds(best)}.{note}"
        )
    others = [p for p in scored[1:] if tied[p.point]]
    unknown = [p for p in scored[1:] if tied[p.point] is None]
    if others:
        count = f"{len(others)} point{'s are' if len(others) > 1 else ' is'}"
        return (
            f"{count} tied with the best ({name}): their 95% intervals overlap; "
            f"train more seeds to separate them.{note}"
        )
    if unknown:
        return (
            f"Point {name} is separated by its 95% interval from every point that has one; "
            f"{len(unknown)} point{'s have' if len(unknown) > 1 else ' has'} one scored seed and "
            f"no interval yet.{note}"
        )
    return f"Point {name} is the best, separated from every other point by its 95% interval.{note}"
