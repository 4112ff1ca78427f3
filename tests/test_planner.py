"""grid-plan end to end: the queue it writes, what it prints, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue

from .conftest import SEED_3DBALL, SEED_CONFIG_INFO, run_cli, tree, write


def test_seed_3dball_gives_nine_runs_and_its_config_info(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    result = run_cli(cli.plan, "grid-plan", ["3DBall.yaml"])
    assert result.code == 0, result.err
    queue = Queue(workdir / "sweeps" / "3DBall")
    assert queue.paths.config_info.read_text() == SEED_CONFIG_INFO
    assert "Planned 9 runs" in result.out
    assert "grid-worker --queue sweeps/3DBall" in result.out


def test_no_opt_values_plans_one_run_and_opt_stop_is_removed(workdir: Path) -> None:
    write(
        workdir / "plain.yaml",
        """\
        behaviors:
          3DBall:
            trainer_type: ppo
            opt_stop: [{tag: A, min: 1}, {tag: B, max: 2, step: 10}]
        checkpoint_settings:
          resume: true
          run_id: ignored
        """,
    )
    result = run_cli(cli.plan, "grid-plan", ["plain.yaml", "--run-id", "p"])
    assert result.code == 0, result.err
    assert "checkpoint_settings.resume ignored" in result.err
    assert "checkpoint_settings.run_id ignored" in result.err
    queue = Queue(workdir / "sweeps" / "p")
    assert queue.paths.config_info.read_text() == "p-0\n"
    job = queue.job("p-0")
    assert [(c.tag, c.min, c.max, c.step) for c in job.conditions] == [
        ("A", 1.0, 999999999.0, 0),
        ("B", -999999999.0, 2.0, 10),
    ]
    config = yaml.safe_load(queue.write_config(job).read_text())
    assert config == {"behaviors": {"3DBall": {"trainer_type": "ppo"}}, "checkpoint_settings": {}}


def test_trainer_args_results_dir_and_ports_are_recorded(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    argv = [
        "3DBall.yaml",
        "--env=Builds/3DBall",
        "--no-graphics",
        "--time-scale",
        "20",
        "--num-envs=2",
        "--results-dir",
        "out",
        "--base-port",
        "6000",
        "--queue",
        "q",
    ]
    result = run_cli(cli.plan, "grid-plan", argv)
    assert result.code == 0, result.err
    sweep = Queue(workdir / "q").sweep
    assert sweep.trainer_args == [
        "--env=Builds/3DBall",
        "--no-graphics",
        "--time-scale",
        "20",
        "--num-envs=2",
    ]
    assert sweep.results_dir == str(workdir / "out")
    assert (sweep.base_port, sweep.num_envs) == (6000, 2)
    assert Queue(workdir / "q").port_for(3) == 6006


def test_dry_run_prints_the_runs_and_writes_nothing(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    before = tree(workdir)
    result = run_cli(cli.plan, "grid-plan", ["3DBall.yaml", "--dry-run"])
    assert result.code == 0
    assert result.out.startswith(SEED_CONFIG_INFO)
    assert tree(workdir) == before


def test_status_json_lists_pending_runs_in_order(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    result = run_cli(cli.status_command, "grid-status", ["--json"])
    report = json.loads(result.out)
    assert report["counts"]["pending"] == 9
    assert [r["run_id"] for r in report["runs"]] == [f"3DBall-{i}" for i in range(9)]
    run = report["runs"][4]
    assert run["status"] == "pending"
    assert run["values"] == {"3DBall": {"beta": 0.002, "epsilon": 0.2}}
    for key in ("attempts", "config", "log", "exit_code", "stop_reason"):
        assert key in run


def test_an_existing_sweep_and_existing_results_are_refused(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    again = run_cli(cli.plan, "grid-plan", ["3DBall.yaml"])
    assert again.code == 2
    assert "already planned" in again.err and "--extend" in again.err
    (workdir / "results" / "other-4").mkdir(parents=True)
    before = tree(workdir)
    clash = run_cli(cli.plan, "grid-plan", ["3DBall.yaml", "--run-id", "other", "--queue", "q2"])
    assert clash.code == 2
    assert "other-4" in clash.err and "--force" in clash.err
    assert tree(workdir) == before
    forced = run_cli(
        cli.plan, "grid-plan", ["3DBall.yaml", "--run-id", "other", "--queue", "q2", "--force"]
    )
    assert forced.code == 0
    assert Queue(workdir / "q2").sweep.force


def test_grids_above_the_limit_need_max_runs(workdir: Path) -> None:
    first, second = (", ".join(map(str, range(n))) for n in (101, 100))
    write(
        workdir / "big.yaml",
        f"""\
        behaviors:
          B:
            a: {{opt_values: [{first}]}}
            b: {{opt_values: [{second}]}}
        """,
    )
    refused = run_cli(cli.plan, "grid-plan", ["big.yaml", "--dry-run"])
    assert refused.code == 2
    assert "10,100 runs" in refused.err and "B.a (101) x B.b (100)" in refused.err
    assert "--max-runs 10100" in refused.err
    allowed = run_cli(cli.plan, "grid-plan", ["big.yaml", "--max-runs", "10100", "--run-id", "b"])
    assert allowed.code == 0, allowed.err
    assert len(Queue(workdir / "sweeps" / "b").sweep.run_ids) == 10100


BAD_CONFIGS = {
    "invalid YAML": ("behaviors: [a\n", "invalid YAML at line"),
    "top level not a mapping": ("- a\n- b\n", "top level must be a mapping"),
    "no behaviors": ("env_settings: {}\n", "no `behaviors:` section"),
    "empty opt_values": ("behaviors:\n  B:\n    beta: {opt_values: []}\n", "opt_values is empty"),
    "opt_values not a list": (
        "behaviors:\n  B:\n    beta: {opt_values: 3}\n",
        "behaviors.B.beta.opt_values: opt_values must be a list",
    ),
    "opt_values beside other keys": (
        "behaviors:\n  B:\n    beta: {opt_values: [1], x: 2}\n",
        "must be the only key",
    ),
    "opt_stop without tag": ("behaviors:\n  B:\n    opt_stop: {min: 3}\n", "needs a `tag`"),
    "opt_stop unknown key": (
        "behaviors:\n  B:\n    opt_stop: {tag: a, minimum: 3}\n",
        "unknown opt_stop key 'minimum'",
    ),
    "opt_stop non-numeric": (
        "behaviors:\n  B:\n    opt_stop: {tag: a, step: soon}\n",
        "opt_stop.step: expected a number",
    ),
    "opt_stop min above max": (
        "behaviors:\n  B:\n    opt_stop: {tag: a, min: 5, max: 1}\n",
        "min (5) is greater than max (1)",
    ),
    "unknown section": ("behaviours:\n  B: {}\n", "unknown top-level section 'behaviours'"),
    "non-string key": ("behaviors:\n  B:\n    1: 2\n", "key 1 is not a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_exit_2_with_one_line_and_write_nothing(workdir: Path, case: str) -> None:
    text, expected = BAD_CONFIGS[case]
    (workdir / "bad.yaml").write_text(text)
    before = tree(workdir)
    result = run_cli(cli.plan, "grid-plan", ["bad.yaml"])
    assert result.code == 2
    assert expected in result.err
    assert result.err.startswith("grid-plan: bad.yaml")
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err
    assert tree(workdir) == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["missing.yaml"], "missing.yaml: no such file"),
        (["ok.yaml", "--resume"], "--resume: grid-worker decides"),
        (["ok.yaml", "--resume=1"], "--resume: grid-worker decides"),
        (["ok.yaml", "--run-id", "../escape"], "may not contain"),
        (["ok.yaml", "--run-id", "a/b"], "may not contain"),
        (["ok.yaml", "--num-envs", "zero"], "--num-envs: expected a whole number"),
        (["ok.yaml", "--queue", "/proc/forbidden/q"], "/proc/forbidden/q: cannot create"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    workdir: Path, argv: list[str], expected: str
) -> None:
    write(workdir / "ok.yaml", SEED_3DBALL)
    before = tree(workdir)
    result = run_cli(cli.plan, "grid-plan", argv)
    assert result.code == 2, result.out
    assert expected in result.err
    assert "Traceback" not in result.err
    assert tree(workdir) == before


def test_yaml_alias_bomb_is_refused(workdir: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]")
    text = "environment_parameters:\n" + "".join(f"  {line}\n" for line in lines)
    (workdir / "bomb.yaml").write_text(text + "behaviors:\n  B: {}\n")
    result = run_cli(cli.plan, "grid-plan", ["bomb.yaml"])
    assert result.code == 2
    assert "YAML nodes" in result.err


def test_swept_values_that_yaml_reads_as_text_but_look_like_numbers_are_warned_about(
    workdir: Path,
) -> None:
    """PyYAML reads 1e-3 as the string '1e-3' (issue 22, item 13)."""
    write(
        workdir / "lr.yaml",
        """\
        behaviors:
          B:
            hyperparameters:
              learning_rate: {opt_values: [1e-3, 1.0e-4, 0.0002, 3E-5]}
              beta: {opt_values: [low, high]}
        """,
    )
    result = run_cli(cli.plan, "grid-plan", ["lr.yaml", "--dry-run"])
    assert result.code == 0, result.err
    warned = [line for line in result.err.splitlines() if "warning" in line]
    assert warned == [
        "grid-plan: warning: lr.yaml: behaviors.B.hyperparameters.learning_rate.opt_values: "
        "1e-3, 3E-5 read as text, not as a number (YAML 1.1 needs a dot: 1.0e-3); write "
        "1.0e-3 or 0.001 if you mean a number"
    ]


def test_unknown_run_ids_name_the_closest_ones_in_every_command(workdir: Path) -> None:
    write(workdir / "3DBall.yaml", SEED_3DBALL)
    assert run_cli(cli.plan, "grid-plan", ["3DBall.yaml"]).code == 0
    for command, prog in (
        (cli.stop_command, "grid-stop"),
        (cli.retry_command, "grid-retry"),
        (cli.show_command, "grid-show"),
    ):
        result = run_cli(command, prog, ["3DBall-44"])
        assert result.code == 2
        assert result.err == (
            f"{prog}: sweeps/3DBall: no run '3DBall-44' in this sweep "
            "(closest: 3DBall-4, 3DBall-8, 3DBall-7)\n"
        )
