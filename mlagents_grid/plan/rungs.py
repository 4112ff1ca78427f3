"""Successive-halving rungs (`opt_rungs`): the schedule a sweep is planned with.

Every run trains to the first rung and is paused there (its model saved); once every run of
the rung is paused or final, the best `ceil(keep x points)` grid points are promoted and
resume with `--resume`, the others are stopped. The record of a decided rung is
queue/rung_decision.py; scoring and deciding a rung, results/rung_ranking.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import GridError

OPT_RUNGS = "opt_rungs"
RUNG_KEYS = ("tag", "steps", "keep", "window")
DEFAULT_KEEP = 1 / 3
DEFAULT_WINDOW = 5
# ML-Agents' own default for a behavior without max_steps.
MLAGENTS_DEFAULT_MAX_STEPS = 500_000
EXAMPLE = "e.g. `opt_rungs: {tag: Environment/Cumulative Reward, steps: [20000, 60000]}`"


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


def _kind(value: Any) -> str:
    """A YAML value's type, as a config's author would name it."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", dict: "mapping"}
    return kinds.get(type(value), type(value).__name__)


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
    if tag is None or (isinstance(tag, str) and not tag.strip()):
        raise GridError(f"{where}.tag: missing; give the TensorBoard tag to rank by, {EXAMPLE}")
    if not isinstance(tag, str):
        raise GridError(
            f"{where}.tag: {tag!r} is a {_kind(tag)}, not a TensorBoard tag; give the tag's "
            f"name, {EXAMPLE}"
        )
    steps = raw.get("steps")
    if steps is None or steps == []:
        raise GridError(f"{where}.steps: missing or empty; list the rung steps, {EXAMPLE}")
    if not isinstance(steps, list):
        fix = f"e.g. `steps: [{steps}]`" if _number(steps) else EXAMPLE
        raise GridError(
            f"{where}.steps: {steps!r} is a {_kind(steps)}, not a list; write the rung steps "
            f"as a list, {fix}"
        )
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
