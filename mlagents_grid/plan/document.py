"""Reading a trainer config into a `Plan`: its `opt_values`, `opt_stop` and `opt_rungs`.

The document is walked once, checking its shape as it goes, so that every mistake in it is
one line naming the key; the swept keys become the plan's dimensions and the rest its
template (README: Config syntax).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import GridError
from .conditions import StopCondition, parse_opt_stop
from .grid import Dimension, KeyPath, Plan, dotted
from .rungs import MLAGENTS_DEFAULT_MAX_STEPS, OPT_RUNGS, parse_opt_rungs

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
# A real trainer config has a few hundred nodes; YAML aliases can make millions.
MAX_NODES = 200_000
RUN_ID_RE = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,199}$")
# Text that reads as a number to a person: YAML 1.1 (PyYAML) reads `1e-3` as a string.
NUMBER_RE = re.compile(r"^[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")


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


class _Walker:
    """Collects `opt_values` and `opt_stop` while checking the document's shape."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = 0
        self.warnings: list[str] = []

    def where(self, path: KeyPath) -> str:
        return f"{self.source}: {dotted(path)}" if path else self.source

    def visit(self, node: Any, path: KeyPath) -> None:
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

    def sweep_values(self, node: dict[Any, Any], path: KeyPath) -> tuple[Any, ...] | None:
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
        numeric = [v for v in values if isinstance(v, str) and NUMBER_RE.match(v.strip())]
        if numeric:
            shown = ", ".join(numeric)
            verb = "reads" if len(numeric) == 1 else "read"
            self.warnings.append(
                f"{self.where(path + (OPT_VALUES,))}: {shown} {verb} as text, not as a number "
                "(YAML 1.1 needs a dot: 1.0e-3); write 1.0e-3 or 0.001 if you mean a number"
            )
        return tuple(values)

    def check_plain(self, node: Any, path: KeyPath) -> None:
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

    def check_key(self, key: Any, path: KeyPath) -> None:
        if not isinstance(key, str):
            raise GridError(
                f"{self.where(path)}: key {key!r} is not a string; quote it "
                f"(`'{key}':`) or fix the indentation"
            )

    def collect(self, node: Any, path: KeyPath, dims: list[tuple[KeyPath, tuple[Any, ...]]]) -> Any:
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


def _owns(settings: Any, relative: KeyPath) -> bool:
    """Whether a behavior's own settings define `relative` (so a default does not apply)."""
    node = settings
    for key in relative:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict) or OPT_VALUES in node:
            return True
    return True


def _display_names(paths: list[KeyPath]) -> list[str]:
    """Each path's shortest dotted suffix that no other path of the same owner shares."""
    names = []
    for path in paths:
        for length in range(1, len(path) + 1):
            suffix = path[-length:]
            if sum(1 for other in paths if other[-length:] == suffix) == 1:
                names.append(dotted(suffix))
                break
        else:
            names.append(dotted(path))
    return names


def _pop_path(node: Any, path: KeyPath) -> None:
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
    dims: list[tuple[str, KeyPath, int, tuple[Any, ...]]] = []
    conditions: list[StopCondition] = []

    default_dims: list[tuple[KeyPath, tuple[Any, ...]]] = []
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
            section_dims: list[tuple[KeyPath, tuple[Any, ...]]] = []
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
        warnings=warnings + walker.warnings,
    )


def _plan_behavior(
    walker: _Walker,
    name: str,
    settings: Any,
    default_dims: list[tuple[KeyPath, tuple[Any, ...]]],
    default_stop: Any,
) -> tuple[Any, list[tuple[KeyPath, tuple[Any, ...]]], list[StopCondition]]:
    base: KeyPath = ("behaviors", name)
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise GridError(f"{walker.where(base)}: a behavior's settings must be a mapping")
    own = dict(settings)
    own_stop = own.pop(OPT_STOP, None)
    own_dims: list[tuple[KeyPath, tuple[Any, ...]]] = []
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


def _skeleton(leaves: dict[KeyPath, Any]) -> dict[Any, Any]:
    """Nested mappings with the leaves' paths, so merge order can be read back."""
    root: dict[Any, Any] = {}
    for path in leaves:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = path
    return root


def _leaf_order(tree: dict[Any, Any]) -> list[KeyPath]:
    order: list[KeyPath] = []
    for value in tree.values():
        if isinstance(value, dict):
            order += _leaf_order(value)
        else:
            order.append(value)
    return order


def _name_dimensions(
    dims: list[tuple[str, KeyPath, int, tuple[Any, ...]]],
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
