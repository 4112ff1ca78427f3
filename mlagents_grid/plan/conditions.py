"""`opt_stop` conditions: parsed once at planning (document.py), evaluated by the monitor."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import GridError

# The original tool's defaults: "no bound" was spelled as nine nines.
DEFAULT_MIN = -999999999.0
DEFAULT_MAX = 999999999.0
CONDITION_KEYS = ("tag", "step", "min", "max")


def format_number(value: float) -> str:
    """Print 50 as `50` and 12.345678 as `12.35`, as a person would write them."""
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


@dataclass(frozen=True)
class StopCondition:
    """Stop a run when the latest `tag` of `behavior` leaves [min, max] at or after `step`."""

    behavior: str
    tag: str
    step: int = 0
    min: float = DEFAULT_MIN
    max: float = DEFAULT_MAX

    def holds(self, step: int, value: float) -> str | None:
        """The kill reason when the latest point meets the condition, else None."""
        if step < self.step or not math.isfinite(value):
            return None
        if value < self.min:
            return f"{self.tag}: {format_number(value)} < {format_number(self.min)} [step: {step}]"
        if value > self.max:
            return f"{self.tag}: {format_number(value)} > {format_number(self.max)} [step: {step}]"
        return None

    def describe(self) -> str:
        """`Environment/Cumulative Reward below 50 from step 100000`, for people."""
        bounds = []
        if self.min > DEFAULT_MIN:
            bounds.append(f"below {format_number(self.min)}")
        if self.max < DEFAULT_MAX:
            bounds.append(f"above {format_number(self.max)}")
        limits = " or ".join(bounds) or "never (no min or max)"
        return f"{self.behavior}: stop when {self.tag} is {limits} from step {self.step}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StopCondition:
        return cls(
            behavior=str(data["behavior"]),
            tag=str(data["tag"]),
            step=int(data["step"]),
            min=float(data["min"]),
            max=float(data["max"]),
        )


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise GridError(f"{where}.{key}: expected a number, got {value!r}; write e.g. `{key}: 50`")
    return float(value)


def parse_opt_stop(raw: Any, behavior: str, where: str) -> list[StopCondition]:
    """Validate an `opt_stop` value (a mapping or a list of them) found at `where`."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise GridError(f"{where}: opt_stop is an empty list; give a mapping with at least `tag`")
    conditions = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]" if isinstance(raw, list) else where
        if not isinstance(item, dict):
            raise GridError(
                f"{here}: opt_stop must be a mapping like "
                "`{tag: Environment/Cumulative Reward, step: 100000, min: 50}`"
            )
        unknown = [str(key) for key in item if key not in CONDITION_KEYS]
        if unknown:
            raise GridError(
                f"{here}: unknown opt_stop key {unknown[0]!r}; allowed keys: tag, step, min, max"
            )
        tag = item.get("tag")
        if not isinstance(tag, str) or not tag.strip():
            raise GridError(
                f"{here}: opt_stop needs a `tag`, e.g. `tag: Environment/Cumulative Reward`"
            )
        step = _number(item.get("step", 0), here, "step")
        if step < 0 or not float(step).is_integer():
            raise GridError(f"{here}.step: expected a whole number of steps >= 0, got {step!r}")
        low = _number(item.get("min", DEFAULT_MIN), here, "min")
        high = _number(item.get("max", DEFAULT_MAX), here, "max")
        if low > high:
            raise GridError(
                f"{here}: min ({format_number(low)}) is greater than max ({format_number(high)}); "
                "a run is stopped below min or above max, so min must not exceed max"
            )
        conditions.append(StopCondition(behavior, tag, int(step), low, high))
    return conditions
