"""The grid: a config's swept keys (`Dimension`), the `Plan` they make, and its runs.

A `Plan` yields its runs lazily, so that a 100,000-run grid never sits in memory. Every
run gets its id (`run_id_for`) and its config (`build_config`) here, and only here.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .conditions import StopCondition

# Where a value sits in a trainer config: mapping keys and list indices, outermost first.
KeyPath = tuple[str | int, ...]
SEED_PATH: KeyPath = ("env_settings", "seed")


def dotted(path: KeyPath) -> str:
    """`behaviors.3DBall.hyperparameters.beta`: a key path as messages name it."""
    return ".".join(str(key) for key in path)


@dataclass(frozen=True)
class Dimension:
    """One swept key: where it lands in each run's config and the values it takes."""

    owner: str
    name: str
    path: KeyPath
    values: tuple[Any, ...]


@dataclass(frozen=True)
class PlannedRun:
    index: int
    run_id: str
    assignments: tuple[tuple[KeyPath, Any], ...]
    values: dict[str, dict[str, Any]]
    conditions: tuple[StopCondition, ...]
    point: int = 0
    seed: int | None = None  # set only with --seeds > 1; it is also the last assignment


@dataclass
class Plan:
    """A config's grid: the shared template, its dimensions and its stop conditions."""

    source: str
    prefix: str
    template: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    conditions: tuple[StopCondition, ...]
    behaviors: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)
    # --seeds: each grid point is trained with seed_values[k], k = 0..len-1; () means once,
    # with the config's own seed, exactly as planned before seeds existed.
    seed_values: tuple[int, ...] = ()
    rungs: dict[str, Any] | None = None  # `opt_rungs`, checked (see rungs.py)

    @property
    def points(self) -> int:
        return math.prod(len(d.values) for d in self.dimensions)

    @property
    def count(self) -> int:
        return self.points * max(1, len(self.seed_values))

    def describe_dimensions(self) -> str:
        swept = " x ".join(f"{d.owner}.{d.name} ({len(d.values)})" for d in self.dimensions)
        seeds = f"{len(self.seed_values)} seeds" if self.seed_values else ""
        return " x ".join(filter(None, (swept, seeds))) or "no swept keys"

    def run_ids(self) -> list[str]:
        """The run ids in run order (point-major), without building the runs."""
        if not self.seed_values:
            return [run_id_for(self.prefix, point) for point in range(self.points)]
        return [
            seeded_run_id(self.prefix, point, k)
            for point in range(self.points)
            for k in range(len(self.seed_values))
        ]

    def runs(self) -> Iterator[PlannedRun]:
        combos = itertools.product(*(d.values for d in self.dimensions))
        for point, combo in enumerate(combos):
            yield from self.seeded(self.run_at(point, combo))

    def run_at(self, point: int, combo: tuple[Any, ...]) -> PlannedRun:
        """Grid point number `point` with these values (one per dimension, in order)."""
        values: dict[str, dict[str, Any]] = {}
        for dim, value in zip(self.dimensions, combo, strict=True):
            values.setdefault(dim.owner, {})[dim.name] = value
        return PlannedRun(
            index=point,
            run_id=run_id_for(self.prefix, point),
            assignments=tuple(
                (dim.path, value) for dim, value in zip(self.dimensions, combo, strict=True)
            ),
            values=values,
            conditions=self.conditions,
            point=point,
        )

    def seeded(self, run: PlannedRun) -> Iterator[PlannedRun]:
        """The runs of one grid point: the point itself, or one run per seed."""
        if not self.seed_values:
            yield run
            return
        for k in range(len(self.seed_values)):
            yield self.seed_run(run, k)

    def seed_run(self, run: PlannedRun, k: int) -> PlannedRun:
        """Seed number `k` of the grid point `run` (from `run_at`): `PREFIX-<point>-s<k>`."""
        seed = self.seed_values[k]
        return dataclasses.replace(
            run,
            index=run.point * len(self.seed_values) + k,
            run_id=seeded_run_id(self.prefix, run.point, k),
            assignments=(*run.assignments, (SEED_PATH, seed)),
            seed=seed,
        )


def run_id_for(prefix: str, point: int) -> str:
    """The run id of grid point number `point`: the one place a combination gets its id.

    Points are numbered in planning order and, when a sweep is extended, continue from the
    number of points it already has.
    """
    return f"{prefix}-{point}"


def seeded_run_id(prefix: str, point: int, k: int) -> str:
    """`3DBall-4-s1`: point 4, seed index 1; a valid file, run and TensorBoard name anywhere."""
    return f"{run_id_for(prefix, point)}-s{k}"


def format_value(value: Any) -> str:
    """Render a swept value the way it reads in a YAML file, on one line."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        return text.removesuffix("\n...").removesuffix("...").strip()
    return str(value)


def config_info_line(run: PlannedRun) -> str:
    """The seed's format: `3DBall-4 - 3DBall - beta: 0.002 - epsilon: 0.2`.

    With --seeds, the run's env_settings.seed ends the line: `... - epsilon: 0.2 - seed: 1`.
    """
    parts = [run.run_id]
    for owner, named in run.values.items():
        parts.append(owner)
        parts.extend(f"{name}: {format_value(value)}" for name, value in named.items())
    if run.seed is not None:
        parts.append(f"seed: {run.seed}")
    return " - ".join(parts)


def build_config(template: dict[str, Any], assignments: tuple[tuple[KeyPath, Any], ...]) -> Any:
    """The trainer config of one run: the template with the run's values set in place."""
    config = copy.deepcopy(template)
    for path, value in assignments:
        node: Any = config
        for key in path[:-1]:
            if isinstance(node, dict) and not isinstance(node.get(key), dict | list):
                node[key] = {}
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)
    return config
