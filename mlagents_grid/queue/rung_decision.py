"""A decided rung as the queue keeps it (`rungs/<rung>.json`), and what it means for a run.

The monitor writes a decision once; claimers read it to promote or stop the runs paused at
the rung, and to let through the runs it was decided without. Rungs are numbered from 1;
`JobState.rung` counts the rungs a run has passed, so a run with `rung == r` trains towards
(or is paused at) rung `r + 1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..plan.conditions import format_number


@dataclass(frozen=True)
class RankedPoint:
    """A grid point as a rung ranked it: its score and place, and whether it goes on."""

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
    def from_dict(cls, data: Mapping[str, Any]) -> RankedPoint:
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
    points: tuple[RankedPoint, ...]  # best first

    @property
    def promoted(self) -> list[int]:
        return [p.point for p in self.points if p.promoted]

    @property
    def stopped(self) -> list[int]:
        return [p.point for p in self.points if p.eligible and not p.promoted]

    @property
    def refused(self) -> set[int]:
        """The points it did not promote (stopped, or final before it)."""
        return {p.point for p in self.points if not p.promoted}

    def summary(self) -> str:
        """`2 of 5 points promoted (demo-0, demo-3), cut 0.52`, or why none was."""
        ranked = len(self.points)
        if not self.promoted:
            return f"none of {ranked} points promoted: every run was final before the rung"
        runs = ", ".join(r for p in self.points if p.promoted for r in p.runs)
        cut = "" if self.cut is None else f", cut {format_number(self.cut)}"
        return f"{len(self.promoted)} of {ranked} points promoted ({runs}){cut}"

    def listing(self, run_id: str) -> RankedPoint | None:
        """The ranked point that lists the run among its runs."""
        for ranked in self.points:
            if run_id in ranked.runs:
                return ranked
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "step": self.step,
            "keep": self.keep,
            "cut": self.cut,
            "promoted": self.promoted,
            "stopped": self.stopped,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungDecision:
        cut = data.get("cut")
        return cls(
            rung=int(data["rung"]),
            step=int(data["step"]),
            keep=float(data["keep"]),
            cut=float(cut) if isinstance(cut, int | float) else None,
            points=tuple(RankedPoint.from_dict(p) for p in data["points"]),
        )


def ranked_point(decision: RungDecision, run_id: str, point: int) -> RankedPoint | None:
    """The ranked point a run follows at this rung: the one listing the run, else its grid
    point's (a seed added after the decision follows its point); None: its point is not in
    the decision (a point added after it)."""
    listed = decision.listing(run_id)
    if listed is not None:
        return listed
    for ranked in decision.points:
        if ranked.point == point:
            return ranked
    return None


def passes(decision: RungDecision, run_id: str, point: int) -> bool:
    """Whether a decided rung lets a run through: it or its point was promoted, or the rung
    was decided without it (its point was not there, or was final before the rung)."""
    ranked = ranked_point(decision, run_id, point)
    return ranked is None or ranked.promoted or not ranked.eligible


def passed_rungs(
    passed: int, decisions: Mapping[int, RungDecision], run_id: str, point: int
) -> int:
    """The rungs a run has passed (`JobState.rung`) once the decided rungs ahead of it that
    let it through are counted: it trains towards rung `passed_rungs(...) + 1`, the first
    rung not decided or decided against its point."""
    while passed + 1 in decisions and passes(decisions[passed + 1], run_id, point):
        passed += 1
    return passed
