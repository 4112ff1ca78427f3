"""The plan stage in-process: grids and run ids, run configs, seeds, and the --extend diff."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from mlagents_grid.errors import GridError
from mlagents_grid.plan.diff import compare_plans, extension_runs
from mlagents_grid.plan.document import plan_document
from mlagents_grid.plan.grid import (
    SEED_PATH,
    KeyPath,
    Plan,
    build_config,
    config_info_line,
    format_value,
    run_id_for,
    seeded_run_id,
)
from mlagents_grid.plan.seeds import (
    RANDOM_SEED,
    point_assignments,
    run_seed,
    sweep_seeds,
    with_seeds,
)
from mlagents_grid.plan.sweep import Sweep

from ..support.configs import GOALIE_STRIKER


def plan_of(text: str, prefix: str = "run") -> Plan:
    return plan_document(yaml.safe_load(textwrap.dedent(text)), "config.yaml", prefix)


def test_seed_goalie_striker_gives_81_runs_with_defaults_per_behavior() -> None:
    plan = plan_of(GOALIE_STRIKER)
    assert plan.count == 81
    assert [(d.owner, d.name) for d in plan.dimensions] == [
        ("Goalie", "beta"),
        ("Goalie", "epsilon"),
        ("Striker", "beta"),
        ("Striker", "epsilon"),
    ]
    runs = list(plan.runs())
    assert config_info_line(runs[10]) == (
        "run-10 - Goalie - beta: 0.001 - epsilon: 0.2 - Striker - beta: 0.001 - epsilon: 0.2"
    )
    config = build_config(plan.template, runs[80].assignments)
    # Swept keys leave default_settings; the other defaults stay for unlisted behaviors.
    assert config["default_settings"]["hyperparameters"] == {"batch_size": 2048}
    assert "opt_stop" not in config["default_settings"]
    assert config["behaviors"]["Striker"]["hyperparameters"] == {
        "learning_rate": 0.0003,
        "beta": 0.003,
        "epsilon": 0.3,
    }
    # The default condition applies to each behavior on its own.
    assert sorted(c.behavior for c in plan.conditions) == ["Goalie", "Striker"]


def test_a_behaviors_own_value_wins_over_a_swept_default() -> None:
    plan = plan_of(GOALIE_STRIKER.replace("      learning_rate: 0.0003\n", "      beta: 0.5\n", 1))
    assert plan.count == 27
    assert [(d.owner, d.name) for d in plan.dimensions][:1] == [("Goalie", "epsilon")]
    config = build_config(plan.template, next(plan.runs()).assignments)
    assert config["behaviors"]["Goalie"]["hyperparameters"]["beta"] == 0.5


def test_values_of_every_yaml_type_and_the_first_dimension_varies_slowest() -> None:
    plan = plan_of(
        """\
        behaviors:
          B:
            trainer_type:
              opt_values: [ppo, sac]
            network_settings:
              normalize: {opt_values: [true, false]}
              memory:
                opt_values: [null, {sequence_length: 64, memory_size: 128}]
            hyperparameters:
              layers: {opt_values: [[64, 64], [128]]}
        """
    )
    assert plan.count == 16
    lines = [config_info_line(run) for run in plan.runs()]
    assert lines[0] == (
        "run-0 - B - trainer_type: ppo - normalize: true - memory: null - layers: [64, 64]"
    )
    assert lines[15] == (
        "run-15 - B - trainer_type: sac - normalize: false - "
        "memory: {memory_size: 128, sequence_length: 64} - layers: [128]"
    )
    last = build_config(plan.template, list(plan.runs())[15].assignments)
    assert last["behaviors"]["B"]["network_settings"]["memory"] == {
        "sequence_length": 64,
        "memory_size": 128,
    }
    assert last["behaviors"]["B"]["hyperparameters"]["layers"] == [128]


def test_sweep_inside_environment_parameters_is_named_by_its_section() -> None:
    plan = plan_of(
        """\
behaviors:
  Walker: {trainer_type: ppo}
environment_parameters:
  target_speed:
    opt_values: [1.0, 5.0]
  wall_height:
    curriculum:
      - name: Lesson0
        value: {opt_values: [1, 2]}
"""
    )
    lines = [config_info_line(run) for run in plan.runs()]
    assert lines[3] == "run-3 - environment_parameters - target_speed: 5.0 - value: 2"
    config = build_config(plan.template, list(plan.runs())[3].assignments)
    assert config["environment_parameters"]["wall_height"]["curriculum"][0]["value"] == 2
    assert config["environment_parameters"]["target_speed"] == 5.0


def test_keys_are_named_by_the_shortest_unique_dotted_path() -> None:
    plan = plan_of(
        """\
behaviors:
  B:
    reward_signals:
      extrinsic: {gamma: {opt_values: [0.9, 0.99]}}
      curiosity: {gamma: {opt_values: [0.9]}, strength: {opt_values: [0.1]}}
"""
    )
    assert [d.name for d in plan.dimensions] == ["extrinsic.gamma", "curiosity.gamma", "strength"]


# -- run ids ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "point", "k", "plain", "seeded"),
    [
        ("3DBall", 0, 0, "3DBall-0", "3DBall-0-s0"),
        ("3DBall", 4, 1, "3DBall-4", "3DBall-4-s1"),
        ("my-run", 12, 10, "my-run-12", "my-run-12-s10"),
    ],
)
def test_run_ids_name_the_point_and_the_seed(
    prefix: str, point: int, k: int, plain: str, seeded: str
) -> None:
    assert run_id_for(prefix, point) == plain
    assert seeded_run_id(prefix, point, k) == seeded


TWO_BY_TWO = """\
behaviors:
  B:
    hyperparameters:
      beta: {opt_values: [0.1, 0.2]}
      epsilon: {opt_values: [1, 2]}
"""


@pytest.mark.parametrize(
    ("seeds", "ids"),
    [
        (1, ["g-0", "g-1", "g-2", "g-3"]),
        (2, ["g-0-s0", "g-0-s1", "g-1-s0", "g-1-s1", "g-2-s0", "g-2-s1", "g-3-s0", "g-3-s1"]),
    ],
)
def test_a_plans_run_ids_are_its_runs_ids_point_major(seeds: int, ids: list[str]) -> None:
    plan = with_seeds(plan_of(TWO_BY_TWO, "g"), seeds)
    runs = list(plan.runs())
    assert plan.run_ids() == ids
    assert [run.run_id for run in runs] == ids
    assert [run.index for run in runs] == list(range(len(ids)))
    assert [run.point for run in runs] == [i // seeds for i in range(len(ids))]


# -- building a run's config --------------------------------------------------------------
def test_build_config_sets_each_value_and_leaves_the_template_alone() -> None:
    template: dict[str, Any] = {
        "behaviors": {"B": {"trainer_type": "ppo", "hyperparameters": {"beta": 0.1}}},
        "environment_parameters": {"curriculum": [{"value": 1}, {"value": 2}]},
    }
    memory = {"sequence_length": 64}
    assignments: tuple[tuple[KeyPath, Any], ...] = (
        (("behaviors", "B", "hyperparameters", "beta"), 0.5),
        (("behaviors", "B", "network_settings", "memory"), memory),  # levels added
        (("environment_parameters", "curriculum", 1, "value"), 7),  # a list index
    )
    config = build_config(template, assignments)
    assert config == {
        "behaviors": {
            "B": {
                "trainer_type": "ppo",
                "hyperparameters": {"beta": 0.5},
                "network_settings": {"memory": {"sequence_length": 64}},
            }
        },
        "environment_parameters": {"curriculum": [{"value": 1}, {"value": 7}]},
    }
    assert template["behaviors"]["B"] == {"trainer_type": "ppo", "hyperparameters": {"beta": 0.1}}
    assert "network_settings" not in template["behaviors"]["B"]
    config["behaviors"]["B"]["network_settings"]["memory"]["sequence_length"] = 1
    assert memory == {"sequence_length": 64}  # each run gets its own copy of a value


def test_build_config_replaces_a_value_that_stands_where_a_mapping_goes() -> None:
    config = build_config({"debug": False}, ((("debug", "level"), 2),))
    assert config == {"debug": {"level": 2}}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("ppo", "ppo"),
        (0.001, "0.001"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        ([64, 64], "[64, 64]"),
        ({"b": 1, "a": 2}, "{a: 2, b: 1}"),
    ],
)
def test_format_value_reads_as_yaml_on_one_line(value: Any, shown: str) -> None:
    assert format_value(value) == shown


# -- seeds --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What run_seed reads of a run: a Job or a PlannedRun has these two."""

    seed: int | None
    assignments: tuple[tuple[KeyPath, Any], ...] = ()


BETA: KeyPath = ("behaviors", "B", "hyperparameters", "beta")


@pytest.mark.parametrize(
    ("run", "template", "expected"),
    [
        # --seeds gave the run its seed: that wins over anything in the config.
        (Run(3, ((BETA, 0.1), (SEED_PATH, 3))), {"env_settings": {"seed": 9}}, 3),
        (Run(0, ((SEED_PATH, 0),)), {}, 0),
        # The seed is swept with opt_values: the run's own value.
        (Run(None, ((SEED_PATH, 42),)), {"env_settings": {"seed": 9}}, 42),
        (Run(None, ((SEED_PATH, RANDOM_SEED),)), {}, None),
        # Neither: the config's seed; unset or -1 is ML-Agents' random seed.
        (Run(None, ((BETA, 0.1),)), {"env_settings": {"seed": 9}}, 9),
        (Run(None), {"env_settings": {"seed": RANDOM_SEED}}, None),
        (Run(None), {"env_settings": {}}, None),
        (Run(None), {}, None),
        (Run(None), {"env_settings": {"seed": True}}, None),
        (Run(None), {"env_settings": {"seed": "7"}}, None),
    ],
)
def test_run_seed(run: Run, template: Any, expected: int | None) -> None:
    assert run_seed(run, template) == expected


def test_point_assignments_drop_only_the_seed_that_seeds_added() -> None:
    seeded = Run(1, ((BETA, 0.1), (SEED_PATH, 1)))
    swept = Run(None, ((BETA, 0.1), (SEED_PATH, 5)))
    assert point_assignments(seeded) == ((BETA, 0.1),)
    assert point_assignments(swept) == swept.assignments  # a swept seed is a grid point's


def test_with_seeds_adds_the_configs_seed_and_refuses_a_swept_one() -> None:
    seeded = with_seeds(plan_of(TWO_BY_TWO + "env_settings:\n  seed: 10\n"), 3)
    assert seeded.seed_values == (10, 11, 12)
    assert with_seeds(plan_of(TWO_BY_TWO), 2).seed_values == (0, 1)
    plain = plan_of(TWO_BY_TWO)
    assert with_seeds(plain, 1) is plain
    swept = plan_of(TWO_BY_TWO + "env_settings:\n  seed: {opt_values: [1, 2]}\n")
    with pytest.raises(GridError, match=r"sweeps env_settings\.seed with opt_values"):
        with_seeds(swept, 2)


def sweep_record(run_ids: list[str], seeds: int = 1, dims: list[dict[str, Any]] | None = None):
    return Sweep(
        prefix="g",
        source="g.yaml",
        results_dir="results",
        base_port=5005,
        num_envs=1,
        trainer_args=[],
        force=False,
        cwd=".",
        created=0.0,
        behaviors=["B"],
        dimensions=dims or [],
        run_ids=run_ids,
        seeds=seeds,
    )


@pytest.mark.parametrize(
    ("sweep", "template", "expected"),
    [
        (sweep_record(["g-0"]), {"env_settings": {"seed": 7}}, [7]),
        (sweep_record(["g-0"]), {}, [RANDOM_SEED]),
        (sweep_record(["g-0-s0", "g-0-s1"], seeds=2), {"env_settings": {"seed": 7}}, [7, 8]),
        # Given a second seed by --extend: g-0 kept the config's own (random) seed.
        (sweep_record(["g-0", "g-0-s1"], seeds=2), {}, [RANDOM_SEED, 0, 1]),
        (sweep_record(["g-0", "g-0-s1"], seeds=2), {"env_settings": {"seed": 4}}, [4, 5]),
        (
            sweep_record(
                ["g-0", "g-1", "g-2"],
                dims=[{"owner": "env_settings", "name": "seed", "values": [3, -1, 3]}],
            ),
            {},
            [3, RANDOM_SEED],
        ),
    ],
)
def test_sweep_seeds(sweep: Sweep, template: Any, expected: list[int]) -> None:
    assert sweep_seeds(sweep, template) == expected


# -- the --extend diff --------------------------------------------------------------------
BASE = """\
behaviors:
  B:
    trainer_type: ppo
    hyperparameters:
      batch_size: 64
      beta: {opt_values: [0.001, 0.002]}
"""
RUNGS = "opt_rungs: {tag: Environment/Cumulative Reward, steps: [1000]}\n"


def changed(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


def test_compare_plans_accepts_added_values() -> None:
    old, new = plan_of(BASE), plan_of(changed("0.002]", "0.002, 0.003]"))
    change = compare_plans(old, new, ["--env", "x"], None)
    assert [(d.name, added) for d, added in change.added_values] == [("beta", (0.003,))]
    assert change.new_keys == ()
    assert not change.conditions_changed
    assert change.trainer_args == ("--env", "x")
    assert change.describe() == ["new values: B.beta + 0.003"]


def test_compare_plans_accepts_a_new_swept_key_keeping_its_old_value() -> None:
    new = plan_of(changed("batch_size: 64", "batch_size: {opt_values: [64, 128]}"))
    change = compare_plans(plan_of(BASE), new, [], [])
    assert [(d.name, value) for d, value in change.new_keys] == [("batch_size", 64)]
    assert change.added_values == ()
    assert change.describe() == ["new swept key: B.batch_size (existing runs keep 64)"]


def test_compare_plans_accepts_a_changed_opt_stop() -> None:
    stop = "    opt_stop: {tag: Environment/Cumulative Reward, step: 1000, min: 0.5}\n"
    change = compare_plans(plan_of(BASE), plan_of(BASE + stop), [], None)
    assert change.conditions_changed
    assert change.describe() == ["opt_stop changed: applies to every run not yet final"]


@pytest.mark.parametrize(
    ("new", "old_args", "new_args", "message"),
    [
        (
            changed("[0.001, 0.002]", "[0.001]"),
            [],
            None,
            "behaviors.B.hyperparameters.beta changed from {opt_values: [0.001, 0.002]} to "
            "{opt_values: [0.001]} (removed: 0.002)",
        ),
        (
            changed("{opt_values: [0.001, 0.002]}", "0.001"),
            [],
            None,
            "beta changed from {opt_values: [0.001, 0.002]} to 0.001 (no longer swept)",
        ),
        (
            changed("batch_size: 64", "batch_size: 128"),
            [],
            None,
            "batch_size changed from 64 to 128",
        ),
        (changed("trainer_type: ppo", "trainer_type: sac"), [], None, "trainer_type changed"),
        (
            changed("batch_size: 64", "batch_size: {opt_values: [128, 256]}"),
            [],
            None,
            "must keep its old value 64 among its opt_values",
        ),
        (
            changed("batch_size: 64", "batch_size: 64\n      lambd: {opt_values: [0.9]}"),
            [],
            None,
            "lambd changed from (not set) to {opt_values: [0.9]} (a new swept key must have "
            "been set at the same place)",
        ),
        (BASE, ["--env", "a"], ["--env", "b"], "the trainer arguments changed from --env a"),
        (RUNGS + BASE, [], None, "opt_rungs changed from (not set) to"),
    ],
)
def test_compare_plans_refuses_anything_else_naming_the_first_change(
    new: str, old_args: list[str], new_args: list[str] | None, message: str
) -> None:
    with pytest.raises(GridError) as refused:
        compare_plans(plan_of(BASE), plan_of(new), old_args, new_args)
    assert message in str(refused.value)
    assert str(refused.value).startswith("--extend: ")


def test_compare_plans_refuses_removed_rungs() -> None:
    with pytest.raises(GridError, match=r"opt_rungs changed from .* to \(not set\)"):
        compare_plans(plan_of(RUNGS + BASE), plan_of(BASE), [], None)


def test_extension_runs_number_new_points_after_the_old_ones() -> None:
    old = plan_of(BASE, "g")
    new = plan_of(changed("0.002]", "0.002, 0.003]"), "g")
    change = compare_plans(old, new, [], None)
    runs = extension_runs(new, change, (run.assignments for run in old.runs()))
    assert [(r.run_id, r.index, r.point) for r in runs] == [("g-2", 2, 2)]
    assert runs[0].values == {"B": {"beta": 0.003}}


def test_extension_runs_give_a_new_key_only_its_new_values() -> None:
    old = plan_of(BASE, "g")
    new = plan_of(changed("batch_size: 64", "batch_size: {opt_values: [32, 64]}"), "g")
    change = compare_plans(old, new, [], None)
    runs = extension_runs(new, change, (run.assignments for run in old.runs()))
    # The old runs are the points with batch_size 64; the new ones, 32 with each beta.
    assert [config_info_line(r) for r in runs] == [
        "g-2 - B - batch_size: 32 - beta: 0.001",
        "g-3 - B - batch_size: 32 - beta: 0.002",
    ]


def test_extension_runs_add_seeds_to_old_points_before_the_new_points() -> None:
    old = plan_of(BASE, "g")
    new = with_seeds(plan_of(changed("0.002]", "0.002, 0.003]"), "g"), 2)
    change = compare_plans(old, new, [], None)
    runs = extension_runs(new, change, (run.assignments for run in old.runs()), old_seeds=1)
    assert [(r.run_id, r.index, r.point, r.seed) for r in runs] == [
        ("g-0-s1", 2, 0, 1),
        ("g-1-s1", 3, 1, 1),
        ("g-2-s0", 4, 2, 0),
        ("g-2-s1", 5, 2, 1),
    ]
