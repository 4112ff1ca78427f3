"""Grid points ranked by their seeds' scores, with reproducible 95% bootstrap intervals.

Pure functions: scores in, decisions out. The statistics are scipy's own; the fixed
resampling seed makes the same scores give the same report every time.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9_999
BOOTSTRAP_SEED = 0  # every point's resampling starts from this seed: reproducible reports
IQM_MIN_SEEDS = 4  # below this, trimming a quarter from each end leaves too little


@dataclass(frozen=True)
class PointScore:
    """A grid point's seeds' scores and what they say together."""

    point: int
    scores: tuple[float, ...]
    mean: float | None
    ci: tuple[float, float] | None
    iqm: float | None


def bootstrap_interval(scores: Sequence[float]) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean; None below two scores."""
    if len(scores) < 2:
        return None
    result = stats.bootstrap(
        (np.asarray(scores, dtype=float),),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def score_point(point: int, scores: Sequence[float]) -> PointScore:
    """Mean, interval (2+ scores) and interquartile mean (4+ scores, Agarwal et al. 2021)."""
    return PointScore(
        point=point,
        scores=tuple(scores),
        mean=statistics.fmean(scores) if scores else None,
        ci=bootstrap_interval(scores),
        iqm=float(stats.trim_mean(scores, 0.25)) if len(scores) >= IQM_MIN_SEEDS else None,
    )


def rank(points: Sequence[PointScore]) -> list[PointScore]:
    """Best mean first; points without a scored seed last; equal means in point order."""
    return sorted(points, key=lambda p: (p.mean is None, -(p.mean or 0.0), p.point))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def ties(ranked: Sequence[PointScore]) -> dict[int, bool | None]:
    """Which points are tied with the best: their intervals overlap the best one's.

    The best is tied when any other point is. None where it cannot be told: no score, or
    no interval on either side.
    """
    tied: dict[int, bool | None] = {p.point: None for p in ranked}
    best = ranked[0] if ranked and ranked[0].mean is not None else None
    if best is None or best.ci is None:
        return tied
    for other in ranked[1:]:
        if other.mean is not None and other.ci is not None:
            tied[other.point] = _overlap(best.ci, other.ci)
    decided = [tied[p.point] for p in ranked[1:] if tied[p.point] is not None]
    tied[best.point] = any(decided)
    return tied


def verdict(ranked: Sequence[PointScore], tied: dict[int, bool | None], name: str) -> str:
    """One sentence: did the sweep separate a winner? `name` is the best point's name."""
    scored = [p for p in ranked if p.mean is not None]
    if not scored:
        return "No run has data yet, so no point can be ranked."
    best = scored[0]
    if len(scored) == 1:
        return f"Only point {name} has a score so far: nothing to compare it with yet."
    if all(len(p.scores) < 2 for p in scored):
        return (
            "No 95% intervals: one seed per point, so the ranking cannot tell real differences "
            "from luck; plan with --seeds 3 or more to see which differences hold."
        )
    if best.ci is None:
        return (
            f"Point {name} leads with one scored seed, so it has no 95% interval yet; "
            "wait for its other seeds."
        )
    others = [p for p in scored[1:] if tied[p.point]]
    unknown = [p for p in scored[1:] if tied[p.point] is None]
    if others:
        count = f"{len(others)} point{'s are' if len(others) > 1 else ' is'}"
        return (
            f"{count} tied with the best ({name}): their 95% intervals overlap; "
            "train more seeds to separate them."
        )
    if unknown:
        return (
            f"Point {name} is separated by its 95% interval from every point that has one; "
            f"{len(unknown)} point{'s have' if len(unknown) > 1 else ' has'} one scored seed and "
            "no interval yet."
        )
    return f"Point {name} is the best, separated from every other point by its 95% interval."
