"""The `grid-plan --extend` diff: how a changed config grows a sweep, or why it cannot.

Pure: `compare_plans` decides what may change, and `extension_runs` which runs are new and
what they are numbered. queue/extend.py reads the sweep as planned and writes the result.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import GridError
from .document import OPT_VALUES
from .grid import Dimension, KeyPath, Plan, PlannedRun, dotted, format_value
from .rungs import OPT_RUNGS

EXTEND_RULE = "only new opt_values, new swept keys and opt_stop may change"


class _Unset:
    def __repr__(self) -> str:
        return "(not set)"


class _Swept:
    def __deepcopy__(self, memo: dict[int, Any]) -> _Swept:
        return self


_UNSET: Any = _Unset()
_SWEPT: Any = _Swept()


@dataclass(frozen=True)
class PlanChange:
    """How a new plan grows an old one; `compare_plans` refuses anything else."""

    # Swept keys new to the sweep, each with the fixed value the existing runs had (and keep).
    new_keys: tuple[tuple[Dimension, Any], ...]
    # Existing swept keys with values added, and the values added.
    added_values: tuple[tuple[Dimension, tuple[Any, ...]], ...]
    conditions_changed: bool
    trainer_args: tuple[str, ...]

    def describe(self) -> list[str]:
        lines = [
            f"new values: {d.owner}.{d.name} + {', '.join(format_value(v) for v in added)}"
            for d, added in self.added_values
        ]
        lines += [
            f"new swept key: {d.owner}.{d.name} (existing runs keep {format_value(value)})"
            for d, value in self.new_keys
        ]
        if self.conditions_changed:
            lines.append("opt_stop changed: applies to every run not yet final")
        return lines


def canonical(value: Any) -> str:
    """A value's identity for comparing grid points (1, 1.0 and true stay apart)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "(not set)"
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    return format_value(value)


def _shown_rungs(rungs: dict[str, Any] | None) -> str:
    return "(not set)" if rungs is None else format_value(rungs)


def _refuse(path: KeyPath, old: Any, new: Any, detail: str = "") -> NoReturn:
    raise GridError(
        f"--extend: {dotted(path)} changed from {_shown(old)} to {_shown(new)}"
        f"{detail}; {EXTEND_RULE}"
    )


def _lookup(node: Any, path: KeyPath) -> Any:
    for key in path:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (in_dict or in_list):
            return _UNSET
        node = node[key]
    return node


def _fixed_value(template: Any, path: KeyPath) -> Any:
    """A key's value in a planned template: set at `path`, or, for a behavior that does not
    set it, the default_settings value it inherits (ML-Agents merges the two)."""
    found = _lookup(template, path)
    if found is _UNSET and path[:1] == ("behaviors",) and len(path) > 2:
        return _lookup(template, ("default_settings", *path[2:]))
    return found


def _mark_swept(template: Any, paths: Iterable[KeyPath]) -> Any:
    """The template with every swept key replaced by a marker, for comparing what is fixed.

    A default_settings sweep lands in behaviors that may lack the levels above it (no
    `hyperparameters:` of their own): those levels are added, as `build_config` adds them
    to each run's config. A path that meets a value which is not a mapping stays unmarked,
    so the comparison names the change there.
    """
    marked = copy.deepcopy(template)
    for path in paths:
        node = marked
        for key in path[:-1]:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            child = _lookup(node, (key,))
            if not isinstance(child, dict | list):
                break
            node = child
        else:
            if isinstance(node, dict) or _lookup(node, path[-1:]) is not _UNSET:
                node[path[-1]] = _SWEPT
    return marked


def _first_difference(old: Any, new: Any, path: KeyPath) -> tuple[KeyPath, Any, Any] | None:
    """The first place (in the old document's order) where two templates differ."""
    if old is _SWEPT or new is _SWEPT:
        return None if old is new else (path, old, new)
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key, _UNSET), new.get(key, _UNSET), (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found = _first_difference(a, b, (*path, index))
            if found is not None:
                return found
        return None
    if old is _UNSET or new is _UNSET or canonical(old) != canonical(new):
        return (path, old, new)
    return None


def compare_plans(
    old: Plan, new: Plan, old_args: list[str], new_args: list[str] | None
) -> PlanChange:
    """What `new` adds to `old`, or a GridError naming the first change --extend refuses.

    Allowed: values added to an existing opt_values list; a new swept key whose old fixed
    value is among its values; any opt_stop. `new_args` None: the trainer arguments are kept.
    `opt_rungs` may not change at all (added, changed or removed). Seeds are not compared:
    the caller checks --seeds against the sweep's.
    """
    if old.rungs != new.rungs:
        raise GridError(
            f"--extend: {OPT_RUNGS} changed from {_shown_rungs(old.rungs)} to "
            f"{_shown_rungs(new.rungs)}; a sweep keeps the rungs it was planned with: "
            f"restore {OPT_RUNGS} or plan a new sweep"
        )
    if new_args is not None and list(new_args) != list(old_args):
        raise GridError(
            f"--extend: the trainer arguments changed from {' '.join(old_args) or '(none)'} to "
            f"{' '.join(new_args) or '(none)'}; give the recorded ones or none at all; "
            f"{EXTEND_RULE}"
        )
    new_by_path = {d.path: d for d in new.dimensions}
    old_paths = {d.path for d in old.dimensions}
    added: list[tuple[Dimension, tuple[Any, ...]]] = []
    for dim in old.dimensions:
        grown = new_by_path.get(dim.path)
        was = {OPT_VALUES: list(dim.values)}
        if grown is None:
            _refuse(dim.path, was, _lookup(new.template, dim.path), " (no longer swept)")
        kept = {canonical(v) for v in grown.values}
        lost = [v for v in dim.values if canonical(v) not in kept]
        if lost:
            shown = ", ".join(format_value(v) for v in lost)
            _refuse(dim.path, was, {OPT_VALUES: list(grown.values)}, f" (removed: {shown})")
        known = {canonical(v) for v in dim.values}
        extra = tuple(v for v in grown.values if canonical(v) not in known)
        if extra:
            added.append((grown, extra))
    new_keys: list[tuple[Dimension, Any]] = []
    for dim in new.dimensions:
        if dim.path in old_paths:
            continue
        fixed = _fixed_value(old.template, dim.path)
        if fixed is _UNSET or canonical(fixed) not in {canonical(v) for v in dim.values}:
            detail = (
                " (a new swept key must have been set at the same place)"
                if fixed is _UNSET
                else f" (a new swept key must keep its old value {format_value(fixed)} among "
                "its opt_values)"
            )
            _refuse(dim.path, fixed, {OPT_VALUES: list(dim.values)}, detail)
        new_keys.append((dim, fixed))
    swept = [d.path for d in old.dimensions] + [d.path for d, _ in new_keys]
    # A new swept key inherited from default_settings: its old fixed value was set there.
    swept += [
        ("default_settings", *d.path[2:])
        for d, _ in new_keys
        if d.path[:1] == ("behaviors",) and _lookup(old.template, d.path) is _UNSET
    ]
    difference = _first_difference(
        _mark_swept(old.template, swept), _mark_swept(new.template, swept), ()
    )
    if difference is not None:
        _refuse(*difference)
    return PlanChange(
        new_keys=tuple(new_keys),
        added_values=tuple(added),
        conditions_changed=tuple(old.conditions) != tuple(new.conditions),
        trainer_args=tuple(old_args),
    )


def point_key(assignments: Iterable[tuple[KeyPath, Any]], dimensions: Iterable[Dimension]) -> str:
    """A grid point's identity over `dimensions` (the assignments must cover each of them)."""
    by_path = {tuple(path): value for path, value in assignments}
    return canonical([by_path[d.path] for d in dimensions])


def carried_assignments(
    assignments: tuple[tuple[KeyPath, Any], ...], change: PlanChange
) -> tuple[tuple[KeyPath, Any], ...]:
    """An existing run's assignments, with the old fixed value of every new swept key."""
    present = {tuple(path) for path, _ in assignments}
    return assignments + tuple(
        (dim.path, value) for dim, value in change.new_keys if dim.path not in present
    )


def values_of(
    assignments: tuple[tuple[KeyPath, Any], ...], dimensions: Iterable[Dimension]
) -> dict[str, dict[str, Any]]:
    """A run's swept values by owner and key name, in dimension order."""
    by_path = {tuple(path): value for path, value in assignments}
    values: dict[str, dict[str, Any]] = {}
    for dim in dimensions:
        if dim.path in by_path:
            values.setdefault(dim.owner, {})[dim.name] = by_path[dim.path]
    return values


def extension_runs(
    new: Plan,
    change: PlanChange,
    existing: Iterable[tuple[tuple[KeyPath, Any], ...]],
    old_seeds: int = 1,
) -> list[PlannedRun]:
    """The runs `new` adds: seeds added to existing grid points, then new grid points.

    `existing` holds each existing run's assignments in run order; a grid point's number is
    the order of its first run (which is how points were numbered). `old_seeds` is how many
    seeds each existing point has (1: planned without --seeds). When `new` has more seeds
    (`Plan.seed_values`), every existing point gets seeds `old_seeds` ... K-1, in point
    order. Then the new points, in the new grid's cartesian order, numbered on from the
    number of points the sweep has, each with all its seeds. Each run's index is its
    place in the sweep's run order.
    """
    have: dict[str, int] = {}
    count = 0
    for assignments in existing:
        have.setdefault(
            point_key(carried_assignments(assignments, change), new.dimensions), len(have)
        )
        count += 1
    seeds = len(new.seed_values)
    grown: dict[int, PlannedRun] = {}
    runs: list[PlannedRun] = []
    number = len(have)
    for combo in itertools.product(*(d.values for d in new.dimensions)):
        assignments = tuple((d.path, v) for d, v in zip(new.dimensions, combo, strict=True))
        point = have.get(point_key(assignments, new.dimensions))
        if point is not None:
            if seeds > old_seeds:
                grown[point] = new.run_at(point, combo)
            continue
        runs.extend(new.seeded(new.run_at(number, combo)))
        number += 1
    added = [
        new.seed_run(grown[point], k) for point in sorted(grown) for k in range(old_seeds, seeds)
    ]
    return [
        dataclasses.replace(run, index=count + position)
        for position, run in enumerate([*added, *runs])
    ]
