"""Successive-halving rungs (`opt_rungs`): the config, the score at a rung, and the decision.

Everything here is pure. Every run trains to the first rung and is paused there (its model
saved); once every run of the rung is paused or final, the best `ceil(keep x points)` grid
points are promoted and resume with `--resume`, the others are stopped. Rungs are numbered
from 1 in files, events and messages; `JobState.rung` counts the rungs a run has passed, so
a run with `rung == r` trains towards (or is paused at) rung `r + 1`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .conditions import format_number
from .errors import GridError

OPT_RUNGS = "opt_rungs"
RUNG_KEYS = ("tag", "steps", "keep", "window")
DEFAULT_KEEP = 1 / 3
DEFAULT_WINDOW = 5
# ML-Agents' own default for a behavior without max_steps.
MLAGENTS_DEFAULT_MAX_STEPS = 500_000
EXAMPLE = "e.g. `opt_rungs: {tag: Environment/Cumulative Reward, steps: [20000, 60000]}`"


class Point(Protocol):
    """A scalar as metrics.Scalar has it (not imported: grid-plan need not load requests)."""

    @property
    def step(self) -> int: ...

    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class _Point:
    step: int
    value: float


@dataclass(frozen=True)
class Rungs:
    tag: str
    steps: tuple[int, ...]
    keep: float = DEFAULT_KEEP
    window: int = DEFAULT_WINDOW

    def to_dict(self) -> dict[str, Any]:
        steps = list(self.steps)
        return {"tag": self.tag, "steps": steps, "keep": self.keep, "window": self.window}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rungs:
        return cls(
            tag=str(data["tag"]),
            steps=tuple(int(s) for s in data["steps"]),
            keep=float(data.get("keep", DEFAULT_KEEP)),
            window=int(data.get("window", DEFAULT_WINDOW)),
        )

    def describe(self) -> str:
        steps = ", ".join(str(s) for s in self.steps)
        return (
            f"pause every run at steps {steps}; keep the best {self.keep:.3g} of the grid "
            f"points at each (mean of the last {self.window} points of {self.tag})"
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_opt_rungs(raw: Any, max_steps: Mapping[str, int], where: str = OPT_RUNGS) -> Rungs:
    """Check `opt_rungs`; `max_steps` is each behavior's smallest max_steps."""
    if not isinstance(raw, dict):
        raise GridError(f"{where}: must be a mapping, {EXAMPLE}")
    unknown = [key for key in raw if key not in RUNG_KEYS]
    if unknown:
        raise GridError(
            f"{where}: unknown key {unknown[0]!r}; opt_rungs takes {', '.join(RUNG_KEYS)}"
        )
    tag = raw.get("tag")
    if not isinstance(tag, str) or not tag.strip():
        raise GridError(f"{where}.tag: missing; give the TensorBoard tag to rank by, {EXAMPLE}")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise GridError(f"{where}.steps: missing or empty; list the rung steps, {EXAMPLE}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps):
        raise GridError(f"{where}.steps: {steps} must be whole numbers above 0, e.g. [20000]")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise GridError(f"{where}.steps: {steps} must be increasing, e.g. [20000, 60000]")
    for behavior, limit in max_steps.items():
        if steps[-1] >= limit:
            raise GridError(
                f"{where}.steps: {steps[-1]} is not below {behavior}'s max_steps ({limit}); "
                "every rung must come before the end of training"
            )
    keep = raw.get("keep", DEFAULT_KEEP)
    if not _number(keep) or not 0 < keep < 1:
        raise GridError(
            f"{where}.keep: {keep!r} must be a fraction between 0 and 1 (exclusive), e.g. 0.34"
        )
    window = raw.get("window", DEFAULT_WINDOW)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise GridError(f"{where}.window: {window!r} must be a whole number of points, at least 1")
    return Rungs(tag=tag, steps=tuple(steps), keep=float(keep), window=window)


def window_score(points: Sequence[Point], step: int, window: int) -> float | None:
    """Mean of the last `window` points at or before `step` (the trainer may overshoot it)."""
    before = [p.value for p in points if p.step <= step and math.isfinite(p.value)]
    tail = before[-window:]
    return statistics.fmean(tail) if tail else None


def run_score(curves: Mapping[str, Sequence[Point]], step: int, window: int) -> float | None:
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


@dataclass(frozen=True)
class PointVerdict:
    point: int
    runs: tuple[str, ...]
    score: float | None
    rank: int
    promoted: bool
    eligible: bool  # False: its runs were already final (failed, stopped) at the rung
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "runs": list(self.runs),
            "score": self.score,
            "rank": self.rank,
            "promoted": self.promoted,
            "eligible": self.eligible,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointVerdict:
        score = data.get("score")
        return cls(
            point=int(data["point"]),
            runs=tuple(str(r) for r in data["runs"]),
            score=float(score) if isinstance(score, int | float) else None,
            rank=int(data["rank"]),
            promoted=bool(data["promoted"]),
            eligible=bool(data.get("eligible", True)),
            reason=str(data["reason"]),
        )


@dataclass(frozen=True)
class RungDecision:
    """What one rung decided, as written to `rungs/<rung>.json`."""

    rung: int  # 1-based
    step: int
    keep: float
    cut: float | None
    verdicts: tuple[PointVerdict, ...]

    @property
    def promoted(self) -> list[int]:
        return [v.point for v in self.verdicts if v.promoted]

    @property
    def stopped(self) -> list[int]:
        return [v.point for v in self.verdicts if v.eligible and not v.promoted]

    def verdict_for(self, run_id: str) -> PointVerdict | None:
        for verdict in self.verdicts:
            if run_id in verdict.runs:
                return verdict
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "step": self.step,
            "keep": self.keep,
            "cut": self.cut,
            "promoted": self.promoted,
            "stopped": self.stopped,
            "points": [v.to_dict() for v in self.verdicts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungDecision:
        cut = data.get("cut")
        return cls(
            rung=int(data["rung"]),
            step=int(data["step"]),
            keep=float(data["keep"]),
            cut=float(cut) if isinstance(cut, int | float) else None,
            verdicts=tuple(PointVerdict.from_dict(v) for v in data["points"]),
        )


def run_verdict(decision: RungDecision, run_id: str, point: int) -> PointVerdict | None:
    """The verdict that decides a run at this rung: the one listing the run, else its grid
    point's (a seed added after the decision follows its point); None: its point is not in
    the decision (a point added after it)."""
    listed = decision.verdict_for(run_id)
    if listed is not None:
        return listed
    for verdict in decision.verdicts:
        if verdict.point == point:
            return verdict
    return None


def passes(decision: RungDecision, run_id: str, point: int) -> bool:
    """Whether a decided rung lets a run through: it or its point was promoted, or the rung
    was decided without it (its point was not there, or was final before the rung)."""
    verdict = run_verdict(decision, run_id, point)
    return verdict is None or verdict.promoted or not verdict.eligible


def passed_rungs(
    passed: int, decisions: Mapping[int, RungDecision], run_id: str, point: int
) -> int:
    """The rungs a run has passed (`JobState.rung`) once the decided rungs ahead of it that
    let it through are counted: it trains towards rung `passed_rungs(...) + 1`, the first
    rung not decided or decided against its point."""
    while passed + 1 in decisions and passes(decisions[passed + 1], run_id, point):
        passed += 1
    return passed


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
                verdict = previous.verdict_for(run.run_id) if previous else None
                taking_part = verdict is not None and verdict.promoted
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
) -> RungDecision:
    """Rank the grid points that entered a rung and promote the best ceil(keep x points).

    `scores` holds every point that entered the rung; `eligible` those with a run paused at
    it (the others were final before it: they are never promoted and take no place). Points
    without a score rank last; ties go to the earlier grid point.
    """
    ranking = sorted(scores, key=lambda p: (scores[p] is None, -(scores[p] or 0.0), p))
    total = len(ranking)
    places = quota(total, keep)
    promoted: list[int] = []
    for point in ranking:
        if point in eligible and len(promoted) < places:
            promoted.append(point)
    cut = scores[promoted[-1]] if promoted else None
    where = f"rung {rung} (step {step})"
    verdicts = []
    for rank, point in enumerate(ranking, 1):
        score = scores[point]
        head = f"{where}: rank {rank} of {total}, {_score_text(score)}"
        if point not in eligible:
            reason = f"{head}; final before the rung"
        elif point in promoted:
            reason = f"{head}; promoted (best {places} of {total})"
        elif score is None:
            reason = f"{head}; no points at or before step {step}"
        elif cut is not None and score < cut:
            reason = f"{head} < cut {format_number(cut)}"
        else:
            reason = f"{head} ties the cut; earlier grid points win ties"
        verdicts.append(
            PointVerdict(
                point=point,
                runs=tuple(runs.get(point, ())),
                score=score,
                rank=rank,
                promoted=point in promoted,
                eligible=point in eligible,
                reason=reason,
            )
        )
    return RungDecision(rung=rung, step=step, keep=keep, cut=cut, verdicts=tuple(verdicts))


def simulate(
    curves: Mapping[int, Sequence[float]], rungs: Rungs, max_steps: int
) -> tuple[list[int], int]:
    """Successive halving on known curves (`curves[point][s - 1]` is the value at step s).

    Returns the finalists (points promoted at the last rung) and the steps trained in all.
    Used by the benchmark to repeat the selection on many generated sweeps.
    """
    alive = sorted(curves)
    trained = 0
    reached = 0
    for number, step in enumerate(rungs.steps, 1):
        trained += (step - reached) * len(alive)
        reached = step
        scores = {
            p: window_score(
                [_Point(s, v) for s, v in enumerate(curves[p][:step], 1)], step, rungs.window
            )
            for p in alive
        }
        decision = decide_rung(number, step, rungs.keep, scores, {}, alive)
        alive = decision.promoted
    trained += (max_steps - reached) * len(alive)
    return alive, trained
