"""Pure expansion of a trainer config with `opt_values` into one run per combination.

Nothing here touches the queue: the planner turns a YAML document into a `Plan`,
and a `Plan` yields its runs lazily so that a 100,000-run grid never sits in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import itertools
import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from warnings import catch_warnings, filterwarnings

import yaml

from .conditions import StopCondition, parse_opt_stop
from .errors import GridError
from .rungs import MLAGENTS_DEFAULT_MAX_STEPS, OPT_RUNGS, Rungs, parse_opt_rungs

OPT_VALUES = "opt_values"
OPT_STOP = "opt_stop"
KNOWN_SECTIONS = (
    "default_settings",
    "behaviors",
    "env_settings",
    "engine_settings",
    "environment_parameters",
    "checkpoint_settings",
    "torch_settings",
    "debug",
)
WORKER_OWNED_CHECKPOINT_KEYS = ("resume", "force", "run_id")
DEFAULT_MAX_RUNS = 10_000
DEFAULT_BASE_PORT = 5005
SWEEP_FORMAT = 1
# Trainer arguments the worker decides for each run.
REFUSED_TRAINER_ARGS = ("--resume", "--force")
# A real trainer config has a few hundred nodes; YAML aliases can make millions.
MAX_NODES = 200_000
RUN_ID_RE = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,199}$")
SEED_PATH = ("env_settings", "seed")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Dimension:
    """One swept key: where it lands in each run's config and the values it takes."""

    owner: str
    name: str
    path: Path_
    values: tuple[Any, ...]


@dataclass(frozen=True)
class PlannedRun:
    index: int
    run_id: str
    assignments: tuple[tuple[Path_, Any], ...]
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

    @property
    def points(self) -> int:
        return math.prod(len(d.values) for d in self.dimensions)

    rungs: dict[str, Any] | None = None  # `opt_rungs`, checked (see rungs.py)

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


def build_config(template: dict[str, Any], assignments: tuple[tuple[Path_, Any], ...]) -> Any:
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


def load_document(path: Path) -> Any:
    """Read and parse a config file, turning every failure into one actionable line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(f"{path}: no such file; give the path of your trainer config") from None
    except IsADirectoryError:
        raise GridError(f"{path}: is a directory; give the path of a trainer config file") from None
    except UnicodeDecodeError:
        raise GridError(f"{path}: not UTF-8 text; save the config as UTF-8 YAML") from None
    except OSError as exc:
        raise GridError(
            f"{path}: cannot read the config ({exc.strerror}); check the file"
        ) from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise GridError(f"{path}: the YAML is nested too deeply to read; flatten it") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GridError(f"{path}: invalid YAML{where}: {problem}; fix the syntax") from None


def _dotted(path: Path_) -> str:
    return ".".join(str(key) for key in path)


class _Walker:
    """Collects `opt_values` and `opt_stop` while checking the document's shape."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = 0

    def where(self, path: Path_) -> str:
        return f"{self.source}: {_dotted(path)}" if path else self.source

    def visit(self, node: Any, path: Path_) -> None:
        """Count nodes (alias bombs) and refuse values a job file cannot hold."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise GridError(
                f"{self.where(path)}: the config expands to more than {MAX_NODES:,} YAML nodes "
                "(repeated aliases?); write the config out without alias bombs"
            )
        if not isinstance(node, dict | list | str | int | float | bool | type(None)):
            raise GridError(
                f"{self.where(path)}: {node!r} reads as a {type(node).__name__}, which a trainer "
                "config cannot hold; quote it"
            )

    def sweep_values(self, node: dict[Any, Any], path: Path_) -> tuple[Any, ...] | None:
        """The values of an `{opt_values: [...]}` mapping, or None for an ordinary mapping."""
        if OPT_VALUES not in node:
            return None
        if len(node) != 1:
            others = ", ".join(str(k) for k in node if k != OPT_VALUES)
            raise GridError(
                f"{self.where(path)}: opt_values must be the only key of its mapping "
                f"(found also: {others}); move the other keys up a level"
            )
        values = node[OPT_VALUES]
        if not isinstance(values, list):
            raise GridError(
                f"{self.where(path + (OPT_VALUES,))}: opt_values must be a list, "
                "e.g. `opt_values: [0.001, 0.002]`"
            )
        if not values:
            raise GridError(
                f"{self.where(path + (OPT_VALUES,))}: opt_values is empty; list at least one value"
            )
        for index, value in enumerate(values):
            self.check_plain(value, path + (OPT_VALUES, index))
        return tuple(values)

    def check_plain(self, node: Any, path: Path_) -> None:
        """A swept value itself may not contain further sweep keys."""
        self.visit(node, path)
        if isinstance(node, dict):
            for key, child in node.items():
                self.check_key(key, path)
                if key in (OPT_VALUES, OPT_STOP):
                    raise GridError(
                        f"{self.where(path + (key,))}: {key} cannot be nested inside opt_values; "
                        "sweep each key separately"
                    )
                self.check_plain(child, path + (key,))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                self.check_plain(child, path + (index,))

    def check_key(self, key: Any, path: Path_) -> None:
        if not isinstance(key, str):
            raise GridError(
                f"{self.where(path)}: key {key!r} is not a string; quote it "
                f"(`'{key}':`) or fix the indentation"
            )

    def collect(self, node: Any, path: Path_, dims: list[tuple[Path_, tuple[Any, ...]]]) -> Any:
        """A copy of `node` with each sweep replaced by its first value; sweeps into `dims`."""
        self.visit(node, path)
        if isinstance(node, dict):
            values = self.sweep_values(node, path)
            if values is not None:
                dims.append((path, values))
                return copy.deepcopy(values[0])
            result = {}
            for key, child in node.items():
                self.check_key(key, path)
                if key == OPT_STOP:
                    raise GridError(
                        f"{self.where(path + (key,))}: opt_stop belongs directly in a behavior "
                        "or in default_settings"
                    )
                result[key] = self.collect(child, path + (key,), dims)
            return result
        if isinstance(node, list):
            return [self.collect(child, path + (i,), dims) for i, child in enumerate(node)]
        return node


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """ML-Agents' deep update: mappings merge, anything else in `override` wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _owns(settings: Any, relative: Path_) -> bool:
    """Whether a behavior's own settings define `relative` (so a default does not apply)."""
    node = settings
    for key in relative:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict) or OPT_VALUES in node:
            return True
    return True


def _display_names(paths: list[Path_]) -> list[str]:
    """Each path's shortest dotted suffix that no other path of the same owner shares."""
    names = []
    for path in paths:
        for length in range(1, len(path) + 1):
            suffix = path[-length:]
            if sum(1 for other in paths if other[-length:] == suffix) == 1:
                names.append(_dotted(suffix))
                break
        else:
            names.append(_dotted(path))
    return names


def _pop_path(node: Any, path: Path_) -> None:
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def plan_document(document: Any, source: str, prefix: str) -> Plan:
    """Expand a parsed trainer config into a `Plan` (see README: Config syntax)."""
    rungs_raw = None
    if isinstance(document, dict) and OPT_RUNGS in document:
        document = dict(document)
        rungs_raw = document.pop(OPT_RUNGS)
    try:
        plan = _plan_document(document, source, prefix)
    except RecursionError:
        raise GridError(f"{source}: the config is nested too deeply; flatten it") from None
    if rungs_raw is not None:
        where = f"{source}: {OPT_RUNGS}"
        plan.rungs = parse_opt_rungs(rungs_raw, _max_steps(document), where).to_dict()
    return plan


def _max_steps(document: dict[str, Any]) -> dict[str, int]:
    """Each behavior's max_steps (the smallest value when it is swept), as ML-Agents reads it."""
    defaults = document.get("default_settings")
    default = defaults.get("max_steps") if isinstance(defaults, dict) else None
    found: dict[str, int] = {}
    for name, settings in document["behaviors"].items():
        value = settings.get("max_steps", default) if isinstance(settings, dict) else default
        if value is None:
            value = MLAGENTS_DEFAULT_MAX_STEPS
        if isinstance(value, dict) and isinstance(value.get(OPT_VALUES), list):
            numbers = [v for v in value[OPT_VALUES] if isinstance(v, int | float)]
            value = min(numbers) if numbers else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[str(name)] = int(value)
    return found


def _plan_document(document: Any, source: str, prefix: str) -> Plan:
    walker = _Walker(source)
    if not isinstance(document, dict):
        raise GridError(
            f"{source}: the top level must be a mapping with a `behaviors:` section, "
            f"got {type(document).__name__}"
        )
    for key in document:
        walker.check_key(key, ())
    unknown = [key for key in document if key not in KNOWN_SECTIONS]
    if unknown:
        raise GridError(
            f"{source}: unknown top-level section {unknown[0]!r}; "
            f"ML-Agents accepts: {', '.join(KNOWN_SECTIONS)}"
        )
    behaviors_raw = document.get("behaviors")
    if not isinstance(behaviors_raw, dict) or not behaviors_raw:
        raise GridError(
            f"{source}: no `behaviors:` section; add one mapping each behavior name to its "
            "trainer settings"
        )
    if not RUN_ID_RE.match(prefix) or ".." in prefix:
        raise GridError(
            f"--run-id {prefix!r}: a run id may not contain '/', '\\' or '..', start with '.', "
            "or exceed 200 characters; choose a plain name like 3DBall"
        )
    warnings: list[str] = []
    defaults_raw = document.get("default_settings") or {}
    if not isinstance(defaults_raw, dict):
        raise GridError(f"{source}: default_settings must be a mapping of trainer settings")

    template: dict[str, Any] = {}
    dims: list[tuple[str, Path_, int, tuple[Any, ...]]] = []
    conditions: list[StopCondition] = []

    default_dims: list[tuple[Path_, tuple[Any, ...]]] = []
    defaults = dict(defaults_raw)
    default_stop = defaults.pop(OPT_STOP, None)
    defaults_template = walker.collect(defaults, ("default_settings",), default_dims)
    default_relative = [path[1:] for path, _ in default_dims]
    for relative in default_relative:
        _pop_path(defaults_template, relative)

    for section, body in document.items():
        if section == "default_settings":
            template[section] = defaults_template
        elif section == "behaviors":
            template[section] = {}
            for name, settings in body.items():
                walker.check_key(name, ("behaviors",))
                template[section][name], behavior_dims, behavior_conditions = _plan_behavior(
                    walker, name, settings, default_dims, default_stop
                )
                dims.extend((name, path, 2, values) for path, values in behavior_dims)
                conditions.extend(behavior_conditions)
        else:
            section_dims: list[tuple[Path_, tuple[Any, ...]]] = []
            template[section] = walker.collect(body, (section,), section_dims)
            dims.extend((section, path, 1, values) for path, values in section_dims)
            if section == "checkpoint_settings" and isinstance(template[section], dict):
                for key in WORKER_OWNED_CHECKPOINT_KEYS:
                    if key in template[section]:
                        del template[section][key]
                        warnings.append(
                            f"{source}: checkpoint_settings.{key} ignored: grid-worker sets it "
                            "for each run"
                        )

    return Plan(
        source=source,
        prefix=prefix,
        template=template,
        dimensions=_name_dimensions(dims),
        conditions=tuple(conditions),
        behaviors=tuple(behaviors_raw),
        warnings=warnings,
    )


def _plan_behavior(
    walker: _Walker,
    name: str,
    settings: Any,
    default_dims: list[tuple[Path_, tuple[Any, ...]]],
    default_stop: Any,
) -> tuple[Any, list[tuple[Path_, tuple[Any, ...]]], list[StopCondition]]:
    base: Path_ = ("behaviors", name)
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise GridError(f"{walker.where(base)}: a behavior's settings must be a mapping")
    own = dict(settings)
    own_stop = own.pop(OPT_STOP, None)
    own_dims: list[tuple[Path_, tuple[Any, ...]]] = []
    behavior_template = walker.collect(own, base, own_dims)

    # Defaults a behavior does not override become its own dimensions.
    inherited = {path[1:]: values for path, values in default_dims if not _owns(own, path[1:])}
    own_by_relative = {path[len(base) :]: values for path, values in own_dims}
    merged_order = _leaf_order(_merge(_skeleton(inherited), _skeleton(own_by_relative)))
    swept = {**inherited, **own_by_relative}
    behavior_dims = [(base + relative, swept[relative]) for relative in merged_order]

    conditions: list[StopCondition] = []
    if default_stop is not None:
        conditions += parse_opt_stop(
            default_stop, name, walker.where(("default_settings", OPT_STOP))
        )
    if own_stop is not None:
        conditions += parse_opt_stop(own_stop, name, walker.where(base + (OPT_STOP,)))
    return behavior_template, behavior_dims, conditions


def _skeleton(leaves: dict[Path_, Any]) -> dict[Any, Any]:
    """Nested mappings with the leaves' paths, so merge order can be read back."""
    root: dict[Any, Any] = {}
    for path in leaves:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = path
    return root


def _leaf_order(tree: dict[Any, Any]) -> list[Path_]:
    order: list[Path_] = []
    for value in tree.values():
        if isinstance(value, dict):
            order += _leaf_order(value)
        else:
            order.append(value)
    return order


def _name_dimensions(
    dims: list[tuple[str, Path_, int, tuple[Any, ...]]],
) -> tuple[Dimension, ...]:
    """Name each dimension within its owner; `depth` is how much of its path names the owner."""
    owners: dict[str, list[int]] = {}
    for position, (owner, _, _, _) in enumerate(dims):
        owners.setdefault(owner, []).append(position)
    names: dict[int, str] = {}
    for positions in owners.values():
        relative = [dims[p][1][dims[p][2] :] for p in positions]
        for position, name in zip(positions, _display_names(relative), strict=True):
            names[position] = name
    return tuple(
        Dimension(owner=owner, name=names[i], path=path, values=values)
        for i, (owner, path, _, values) in enumerate(dims)
    )


@contextlib.contextmanager
def _quiet_mlagents_import() -> Iterator[None]:
    """Import ML-Agents without its pkg_resources deprecation warning.

    ML-Agents 1.1.0 imports pkg_resources, and setuptools warns about that on stderr: a line
    about ML-Agents' own code in every grid-plan that checks a config. Only that warning is
    hidden.
    """
    with catch_warnings():
        filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        yield


def validate_with_mlagents(plan: Plan) -> bool:
    """Check runs with ML-Agents' own settings classes; False when mlagents is absent.

    Configs differ only in their swept values, so checking as many runs as the longest
    dimension has values, each run taking the next value of every dimension, puts every
    swept value through ML-Agents at least once without checking the whole grid.
    """
    try:
        with _quiet_mlagents_import():
            from mlagents.plugins.trainer_type import register_trainer_plugins
            from mlagents.trainers.settings import RunOptions, TrainerSettings
    except Exception:
        return False
    with _quiet_mlagents_import():
        register_trainer_plugins()
    width = max((len(d.values) for d in plan.dimensions), default=1)
    for k in range(width):
        assignments = tuple((d.path, d.values[k % len(d.values)]) for d in plan.dimensions)
        config = build_config(plan.template, assignments)
        try:
            RunOptions.from_dict(config)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GridError(
                f"{plan.source}: ML-Agents rejects the config: {first}; fix that key"
            ) from None
        finally:
            TrainerSettings.default_override = None
    return True


@dataclass
class Sweep:
    """What `grid-plan` decided once for every run of the sweep (the queue's sweep.json)."""

    prefix: str
    source: str
    results_dir: str
    base_port: int
    num_envs: int
    trainer_args: list[str]
    force: bool
    cwd: str
    created: float
    behaviors: list[str]
    dimensions: list[dict[str, Any]]
    run_ids: list[str]
    format: int = SWEEP_FORMAT
    seeds: int = 1  # runs per grid point (grid-plan --seeds)
    # Bumped by each `grid-plan --extend`; readers reload sweep.json when it changes.
    generation: int = 0
    # The opt_stop conditions of the latest plan (None: planned before they were recorded).
    conditions: list[dict[str, Any]] | None = None
    # `opt_rungs` as parsed (rungs.Rungs.to_dict); None: no rungs. Absent from older sweeps.
    rungs: dict[str, Any] | None = None

    @property
    def rung_plan(self) -> Rungs | None:
        return Rungs.from_dict(self.rungs) if self.rungs else None

    @property
    def behavior_folders(self) -> list[str]:
        """ML-Agents writes `Soccer?team=0` under `Soccer`."""
        return list(dict.fromkeys(name.split("?")[0] for name in self.behaviors))

    def to_json(self) -> str:
        """The manifest; `seeds` only when above 1, so one seed writes what it always did."""
        data = asdict(self)
        if self.seeds == 1:
            del data["seeds"]
        return json.dumps(data, indent=1)


@dataclass(frozen=True)
class SweepRequest:
    """grid-plan's own options, as given (None: not given)."""

    config: Path
    trainer_args: list[str]
    results_dir: str | None = None
    base_port: int | None = None
    force: bool = False
    max_runs: int = DEFAULT_MAX_RUNS


def settle_sweep(
    document: Any, plan: Plan, request: SweepRequest, cwd: str
) -> tuple[Sweep, list[str]]:
    """Check a plan against its flags and decide ports and folders; returns notes to print.

    Refused here, before anything is written: too many runs, trainer arguments that
    mlagents-learn would refuse in every run, and values ML-Agents rejects.
    """
    source = request.config
    for arg in request.trainer_args:
        name = arg.split("=", 1)[0]
        if name in REFUSED_TRAINER_ARGS:
            raise GridError(
                f"{name}: grid-worker decides --resume/--force for each run; drop it "
                "(use grid-plan --force to overwrite existing results)"
            )
    if plan.count > request.max_runs:
        raise GridError(
            f"{source}: {plan.count:,} runs ({plan.describe_dimensions()}) exceed "
            f"the limit of {request.max_runs:,}; pass --max-runs {plan.count} to allow them"
        )
    notes = [f"warning: {warning}" for warning in plan.warnings]
    parsed = check_trainer_args(str(source), request.trainer_args)
    if parsed is None and request.trainer_args:
        notes.append(
            "warning: mlagents is not importable here, so the trainer arguments "
            f"({' '.join(request.trainer_args)}) were not checked; a mistyped one fails every run"
        )
    if not validate_with_mlagents(plan):
        notes.append(
            "note: mlagents is not importable here, so only the top-level sections were "
            "checked; install mlagents beside grid-plan for full validation"
        )
    num_envs_arg = _option_value(request.trainer_args, "--num-envs")
    if parsed is not None and "num_envs" in parsed:
        num_envs_arg = str(parsed["num_envs"]) if num_envs_arg or parsed["num_envs"] != 1 else None
    num_envs = positive_int(
        num_envs_arg or _section_value(document, "env_settings", "num_envs") or 1,
        "--num-envs" if num_envs_arg else f"{source}: env_settings.num_envs",
    )
    results = Path(
        request.results_dir
        or str(_section_value(document, "checkpoint_settings", "results_dir") or "results")
    )
    if not results.is_absolute():
        results = Path(cwd) / results
    base_port = positive_int(
        request.base_port
        or _section_value(document, "env_settings", "base_port")
        or DEFAULT_BASE_PORT,
        "--base-port",
    )
    sweep = Sweep(
        prefix=plan.prefix,
        source=str(source.absolute()),
        results_dir=str(results),
        base_port=base_port,
        num_envs=num_envs,
        trainer_args=list(request.trainer_args),
        force=request.force,
        cwd=cwd,
        created=time.time(),
        behaviors=list(plan.behaviors),
        dimensions=dimension_records(plan.dimensions),
        run_ids=plan.run_ids(),
        seeds=max(1, len(plan.seed_values)),
        conditions=[c.to_dict() for c in plan.conditions],
        rungs=plan.rungs,
    )
    return sweep, notes


def dimension_records(dimensions: Iterable[Dimension]) -> list[dict[str, Any]]:
    """sweep.json's account of the swept keys (the path lets --extend compare plans)."""
    return [
        {"owner": d.owner, "name": d.name, "path": list(d.path), "values": list(d.values)}
        for d in dimensions
    ]


def check_results_clash(sweep: Sweep, existing: Iterable[str]) -> None:
    """Refuse run ids whose results folder exists (--force lets their first attempt overwrite)."""
    if sweep.force:
        return
    order = {run_id: i for i, run_id in enumerate(sweep.run_ids)}
    clash = sorted((name for name in existing if name in order), key=order.__getitem__)
    if clash:
        shown = ", ".join(clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise GridError(
            f"{sweep.results_dir}: results already exist for {len(clash)} run id(s) ({shown}); "
            "pass --force to overwrite them, or --run-id with a new prefix"
        )


def _option_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _section_value(document: object, section: str, key: str) -> object:
    body = document.get(section) if isinstance(document, dict) else None
    return body.get(key) if isinstance(body, dict) else None


def positive_int(value: object, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise GridError(f"{where}: expected a whole number, got {value!r}") from None
    if number < 1:
        raise GridError(f"{where}: must be at least 1, got {number}")
    return number


def check_trainer_args(config: str, trainer_args: list[str]) -> dict[str, Any] | None:
    """Parse the trainer arguments with mlagents-learn's own parser; None without mlagents.

    Every run gets these arguments: one that mlagents-learn refuses would fail every run,
    each after a start-up, so it is refused once here instead.
    """
    try:
        with _quiet_mlagents_import():
            from mlagents.trainers.cli_utils import _create_parser
    except Exception:
        return None
    parser: argparse.ArgumentParser = _create_parser()

    def refuse(message: str) -> NoReturn:
        raise GridError(
            f"mlagents-learn rejects the trainer arguments: {message}; fix them "
            "(mlagents-learn --help lists its options)"
        )

    parser.error = refuse  # type: ignore[method-assign]
    return vars(parser.parse_args([config, *trainer_args, "--run-id", "grid-plan-check"]))


# -- growing a sweep (grid-plan --extend) ------------------------------------------------
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


def _refuse(path: Path_, old: Any, new: Any, detail: str = "") -> NoReturn:
    raise GridError(
        f"--extend: {_dotted(path)} changed from {_shown(old)} to {_shown(new)}"
        f"{detail}; {EXTEND_RULE}"
    )


def _lookup(node: Any, path: Path_) -> Any:
    for key in path:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (in_dict or in_list):
            return _UNSET
        node = node[key]
    return node


def _mark_swept(template: Any, paths: Iterable[Path_]) -> Any:
    marked = copy.deepcopy(template)
    for path in paths:
        node = marked
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _SWEPT
    return marked


def _first_difference(old: Any, new: Any, path: Path_) -> tuple[Path_, Any, Any] | None:
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
        fixed = _lookup(old.template, dim.path)
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


def point_key(assignments: Iterable[tuple[Path_, Any]], dimensions: Iterable[Dimension]) -> str:
    """A grid point's identity over `dimensions` (the assignments must cover each of them)."""
    by_path = {tuple(path): value for path, value in assignments}
    return canonical([by_path[d.path] for d in dimensions])


def carried_assignments(
    assignments: tuple[tuple[Path_, Any], ...], change: PlanChange
) -> tuple[tuple[Path_, Any], ...]:
    """An existing run's assignments, with the old fixed value of every new swept key."""
    present = {tuple(path) for path, _ in assignments}
    return assignments + tuple(
        (dim.path, value) for dim, value in change.new_keys if dim.path not in present
    )


def values_of(
    assignments: tuple[tuple[Path_, Any], ...], dimensions: Iterable[Dimension]
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
    existing: Iterable[tuple[tuple[Path_, Any], ...]],
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
