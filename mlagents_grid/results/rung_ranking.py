"""Deciding a rung (`opt_rungs`): which runs take part, their scores at its step, and which
grid points it promotes. Pure functions; the monitor (rung_monitor.py) reads the metrics and
writes the decision."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..plan.conditions import format_number
from ..queue.rung_decision import RankedPoint, RungDecision, passed_rungs
from .metrics import Scalar
from .ranking import best_first

# The reason of a point that trained to max_steps before its rung was decided.
FINISHED = "done: trained to the end before the rung was decided"


def window_score(points: Sequence[Scalar], step: int, window: int) -> float | None:
    """Mean of the last `window` points at or before `step` (the trainer may overshoot it)."""
    before = [p.value for p in points if p.step <= step and math.isfinite(p.value)]
    tail = before[-window:]
    return statistics.fmean(tail) if tail else None


def run_score(curves: Mapping[str, Sequence[Scalar]], step: int, window: int) -> float | None:
    """The mean over the run's behaviors of their window scores (behaviors without data skip)."""
    found = [window_score(points, step, window) for points in curves.values()]
    scores = [s for s in found if s is not None]
    return statistics.fmean(scores) if scores else None


def point_score(run_scores: Sequence[float | None]) -> float | None:
    """A grid point's score: the mean over its runs (seeds) that have one."""
    scores = [s for s in run_scores if s is not None]
    return statistics.fmean(scores) if scores else None


def quota(points: int, keep: float) -> int:
    """How many of `points` grid points a rung promotes: ceil(keep x points), at least 1."""
    return max(1, math.ceil(keep * points - 1e-9)) if points else 0


def rung_places(points: Collection[int], keep: float, previous: RungDecision | None) -> int:
    """How many of the points that entered a rung it promotes: ceil(keep x the points it
    counts), at least 1.

    It counts every point that entered but those the previous rung did not promote, which
    are there only because grid-retry brought them back: a retried loser competes for the
    places the rung has without it, so retrying never changes how many points a rung
    promotes. Points the previous rung did not rank (added by --extend, or promoted past it
    by hand while paused) count.
    """
    if not points:
        return 0
    refused = set() if previous is None else previous.refused
    return max(1, quota(sum(1 for p in points if p not in refused), keep))


@dataclass(frozen=True)
class RunAtRung:
    """What `entered` needs to know of a run."""

    run_id: str
    point: int
    rung: int  # JobState.rung (0 for a run never started)
    final: bool


def entered(
    number: int, decisions: Mapping[int, RungDecision], runs: Sequence[RunAtRung]
) -> list[str]:
    """The runs that take part in rung `number` (not yet decided), in the order given.

    Final runs: at rung 1 those that never passed a rung, later those the previous rung
    promoted. Runs not final: those heading to this rung once the decided rungs that let
    them through are passed; so a point added by --extend joins the first rung not yet
    decided, a seed added to a promoted point joins its point, and a run that passed the
    rung by hand (grid-retry of a paused run) is not waited for.
    """
    previous = decisions.get(number - 1)
    found = []
    for run in runs:
        if run.final:
            if number == 1:
                taking_part = run.rung == 0
            else:
                listed = previous.listing(run.run_id) if previous else None
                taking_part = listed is not None and listed.promoted
        else:
            taking_part = passed_rungs(run.rung, decisions, run.run_id, run.point) == number - 1
        if taking_part:
            found.append(run.run_id)
    return found


def _score_text(score: float | None) -> str:
    return "no score" if score is None else f"score {format_number(score)}"


def decide_rung(
    rung: int,
    step: int,
    keep: float,
    scores: Mapping[int, float | None],
    runs: Mapping[int, Sequence[str]],
    eligible: Collection[int],
    previous: RungDecision | None = None,
    done: Collection[int] = (),
) -> RungDecision:
    """Rank the grid points that entered a rung and promote the best `rung_places`.

    `scores` holds every point that entered the rung; `eligible` those with a run paused at
    it (the others were final before it: they are never promoted and take no place), and
    `done` those of the others whose runs trained to the end (no monitor paused them);
    `previous` the decision of the rung before (None at rung 1). Points without a score
    rank last; ties go to the earlier grid point.
    """
    ranking = sorted(scores, key=lambda p: best_first(scores[p], p))
    total = len(ranking)
    places = rung_places(ranking, keep, previous)
    promoted: list[int] = []
    for point in ranking:
        if point in eligible and len(promoted) < places:
            promoted.append(point)
    cut = scores[promoted[-1]] if promoted else None
    where = f"rung {rung} (step {step})"
    ranked = []
    for rank, point in enumerate(ranking, 1):
        score = scores[point]
        head = f"{where}: rank {rank} of {total}, {_score_text(score)}"
        if point not in eligible:
            reason = f"{head}; {FINISHED if point in done else 'final before the rung'}"
        elif point in promoted:
            reason = f"{head}; promoted (best {places} of {total})"
        elif score is None:
            reason = f"{head}; no points at or before step {step}"
        elif cut is not None and score < cut:
            reason = f"{head} < cut {format_number(cut)}"
        else:
            reason = f"{head} ties the cut; earlier grid points win ties"
        ranked.append(
            RankedPoint(
                point=point,
                runs=tuple(runs.get(point, ())),
                score=score,
                rank=rank,
                promoted=point in promoted,
                eligible=point in eligible,
                reason=reason,
            )
        )
    return RungDecision(rung=rung, step=step, keep=keep, cut=cut, points=tuple(ranked))
