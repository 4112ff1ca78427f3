"""grid-status's view: rows chosen to fit the screen, filters, literal cells, incremental looks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.ownership import Claims, Identity
from mlagents_grid.results.metrics import DEFAULT_METRIC
from mlagents_grid.results.status import Entry, EventTail, Tracker, allot, select

from .conftest import run_cli
from .support.sweep import Sweep

TAG = "Environment/Cumulative Reward"
GENEROUS_S = 60  # 3-4x what a quiet machine needs


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ([100, 3, 500, 9000], 40, [13, 3, 12, 12]),  # what the small group leaves is shared
        ([2, 10, 10], 6, [2, 2, 2]),
        ([5, 5], 100, [5, 5]),  # room for everything
        ([10, 10, 10], 4, [2, 1, 1]),  # a remainder goes to the first groups
        ([], 10, []),
        ([3, 3], 0, [0, 0]),
    ],
)
def test_allot_shares_rows_fairly(sizes: list[int], budget: int, expected: list[int]) -> None:
    assert allot(sizes, budget) == expected


def entry(run_id: str, status: str, ended: float | None = None, score: float | None = None):
    return Entry(run_id, status, ended, score)


SWEEP = [
    entry("r0", "done", 10, 5.0),
    entry("r1", "done", 11, 9.0),
    entry("r2", "failed", 12),
    entry("r3", "running"),
    entry("r4", "paused", None, 1.0),
    entry("r5", "done", 13, 7.0),
    entry("r6", "stopped", 14, 2.0),
    entry("r7", "pending"),
    entry("r8", "pending"),
    entry("r9", "unreadable"),
    *(entry(f"r{i}", "pending") for i in range(10, 20)),
]
ALL = [f"r{i}" for i in range(20)]


@pytest.mark.parametrize(
    ("rows", "options", "sections", "hidden"),
    [
        # It fits: every run in run order, nothing hidden.
        (20, {}, [("", ALL)], {}),
        # It does not: the groups that matter share the rows (a title each), the next
        # pending runs fill what is left.
        (
            9,
            {},
            [
                ("training: 1 of 2", ["r3"]),
                ("failed: 1 of 2", ["r2"]),
                ("best: 1 of 4", ["r1"]),
                ("latest: 1 of 4", ["r6"]),
            ],
            {"pending": 12, "paused": 1, "done": 2, "unreadable": 1},
        ),
        (
            13,
            {},
            [
                ("training: 2", ["r3", "r4"]),
                ("failed: 2", ["r2", "r9"]),
                ("best: 2 of 4", ["r1", "r5"]),
                ("latest: 2 of 4", ["r6", "r0"]),
            ],
            {"pending": 12},
        ),
        (
            15,
            {},
            [
                ("training: 2", ["r3", "r4"]),
                ("failed: 2", ["r2", "r9"]),
                ("best: 3 of 4", ["r1", "r5", "r0"]),
                ("latest: 1 of 4", ["r6"]),  # the others are shown above
                ("next: 2 of 12", ["r7", "r8"]),
            ],
            {"pending": 10},
        ),
        # --status: those statuses in run order, capped; --all with it: all of them.
        (3, {"statuses": ["done", "failed"]}, [("status done,failed", ["r0", "r1"])], None),
        (
            3,
            {"statuses": ["done", "failed"], "every": True},
            [("status done,failed", ["r0", "r1", "r2", "r5"])],
            {"running": 1, "paused": 1, "stopped": 1, "pending": 12, "unreadable": 1},
        ),
        # --top: the K best scores, training runs too; with --status, among those.
        (3, {"top": 3}, [("best 3 by score", ["r1", "r5", "r0"])], None),
        (
            3,
            {"top": 2, "statuses": ["paused", "stopped"]},
            [("best 2 by score", ["r6", "r4"])],
            None,
        ),
        # --all: every run in run order.
        (3, {"every": True}, [("", ALL)], {}),
    ],
)
def test_select_chooses_the_rows_of_the_view(
    rows: int,
    options: dict[str, Any],
    sections: list[tuple[str, list[str]]],
    hidden: dict[str, int] | None,
) -> None:
    selection = select(SWEEP, rows, **options)
    assert [(s.title, s.run_ids) for s in selection.sections] == sections
    shown = sum(len(s.run_ids) for s in selection.sections)
    if hidden is not None:
        assert selection.hidden == hidden
    assert sum(selection.hidden.values()) == len(SWEEP) - shown
    if not options.get("every") and "top" not in options:
        assert shown + sum(bool(s.title) for s in selection.sections) <= rows


def test_event_tail_reads_only_what_was_appended(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "planned", "run_id": null}\n')
    tail = EventTail(events)
    assert tail.read() is None  # first look: read everything
    assert tail.read() == set()
    with open(events, "a") as handle:
        handle.write('{"event": "started", "run_id": "g-1"}\n{"event": "done", "run_id": "g-2"}\n')
        handle.write('{"event": "started", "run_id": "g-3"')  # still being appended
    assert tail.read() == {"g-1", "g-2"}
    with open(events, "a") as handle:
        handle.write("}\nnot json\n")
    assert tail.read() == {"g-3"}
    events.write_text("")  # replaced by a shorter file: read everything again
    assert tail.read() is None


def table_ids(text: str) -> list[str]:
    """The run of each row, in the order shown (after a group's name, if any)."""
    return re.findall(r"^(?:[^│\n]*│ )?(grid-\d+) ", text, re.MULTILINE)


def twelve_runs(new_sweep: Callable[..., Sweep], root: Path) -> Sweep:
    """grid-i scores i; grid-2 and grid-5 fail."""
    runs: dict[str, Any] = {f"grid-{i}": {"curve": {"*": [float(i)]}} for i in range(12)}
    for failing in ("grid-2", "grid-5"):
        runs[failing]["crash"] = 3
    sweep = new_sweep(
        root,
        runs=12,
        ticks=3,
        options={"default": {"step_delay": 0}, "runs": runs},
        plan_args=("--max-attempts", "1"),
    )
    workers = [sweep.start_worker() for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=GENEROUS_S) == 0, sweep.output(worker)
    return sweep


def test_the_view_fits_the_screen_and_the_flags_select_rows(
    new_sweep: Callable[..., Sweep], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = twelve_runs(new_sweep, tmp_path)
    queue = ["--queue", str(sweep.queue_dir)]
    monkeypatch.setenv("LINES", "14")  # not a terminal: $LINES is the height
    view = run_cli(cli.status_command, "grid-status", queue)
    assert view.code == 0, view.err
    lines = view.out.splitlines()
    assert len(lines) <= 14
    assert "12/12 final (10 done, 2 failed)" in lines[0]
    for title in ("failed: 2", "best: 2 of 10", "latest: 2 of 10"):
        assert title in view.out
    ids = table_ids(view.out)
    assert ids[:4] == ids[:2] + ["grid-11", "grid-10"]
    assert set(ids[:2]) == {"grid-2", "grid-5"}
    assert len(ids) == 6
    assert lines[-1].startswith("6 runs not shown (6 done): --all shows every run")

    every = run_cli(cli.status_command, "grid-status", [*queue, "--all"])
    assert table_ids(every.out) == [f"grid-{i}" for i in range(12)]
    assert "not shown" not in every.out
    failed = run_cli(cli.status_command, "grid-status", [*queue, "--status", "failed"])
    assert table_ids(failed.out) == ["grid-2", "grid-5"]
    assert "10 runs not shown (10 done)" in failed.out
    top = run_cli(cli.status_command, "grid-status", [*queue, "--top", "3"])
    assert table_ids(top.out) == ["grid-11", "grid-10", "grid-9"]
    assert "best 3 by score" not in top.out  # one group: no group column
    both = run_cli(cli.status_command, "grid-status", [*queue, "--json", "--top", "2"])
    assert [r["run_id"] for r in json.loads(both.out)["runs"]] == ["grid-11", "grid-10"]
    complete = json.loads(run_cli(cli.status_command, "grid-status", [*queue, "--json"]).out)
    assert [r["run_id"] for r in complete["runs"]] == [f"grid-{i}" for i in range(12)]
    assert complete["runs"][11]["score"] == 11.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--status", "runing"], "--status 'runing': unknown status 'runing'; give one or more of"),
        (["--status", ","], "--status ',': empty; give one or more of"),
        (["--top", "0"], "--top: must be at least 1, got 0"),
        (["--top", "two"], "--top: expected a whole number, got 'two'"),
    ],
)
def test_bad_filters_exit_2_in_one_line(
    new_sweep: Callable[..., Sweep], tmp_path: Path, argv: list[str], message: str
) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    result = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir), *argv])
    assert result.code == 2
    assert result.err.startswith(f"grid-status: {message}")
    assert len(result.err.strip().splitlines()) == 1


def test_run_data_is_printed_literally_never_as_markup(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=1,
        extra="default_settings:\n  network_settings:\n"
        "    activations: {opt_values: [[relu, tanh], [bold]]}\n",
    )
    reason = "reward [/x] fell [step: 5] [bold red]oops"
    stopped = run_cli(
        cli.stop_command,
        "grid-stop",
        ["--queue", str(sweep.queue_dir), "--all", "--reason", reason],
    )
    assert stopped.code == 0, stopped.err
    for argv in ([], ["--watch"], ["--all"]):
        shown = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir), *argv])
        assert shown.code == 0, shown.err
        # A row of one line may cut the note short; --all folds it over lines.
        assert shown.out.count("reward [/x] fell [step: 5] [bold") == 2, shown.out
        assert "[relu, tanh]" in shown.out and "[bold]" in shown.out
    assert shown.out.count("red]oops") == 2, shown.out


def test_a_look_reads_only_the_runs_that_changed(
    new_sweep: Callable[..., Sweep], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = new_sweep(tmp_path, runs=5)
    tracker = Tracker(sweep.queue, DEFAULT_METRIC, live=True)
    tracker.look()
    read: list[str] = []
    real = sweep.queue.state_of

    def counted(run_id: str) -> Any:
        read.append(run_id)
        return real(run_id)

    monkeypatch.setattr(sweep.queue, "state_of", counted)
    tracker.look()
    assert read == []  # nothing changed: no state read
    sweep.stop("grid-3")
    tracker.look()
    assert read == ["grid-3"]
    assert tracker.status("grid-3") == "stopped" and tracker.status("grid-2") == "pending"


def test_the_rung_header_leaves_out_a_run_promoted_by_hand(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(
        tmp_path,
        runs=3,
        ticks=40,
        extra=f"opt_rungs:\n  tag: {TAG}\n  steps: [5]\n  keep: 0.34\n  window: 2\n",
        options={
            "default": {"step_delay": 2.0},  # grid-1 and grid-2 reach the rung after 10 s
            "runs": {"grid-0": {"step_delay": 0.2}},  # there after 1 s, done after 8 s
        },
    )
    sweep.start(
        sweep.command("grid-monitor", "--logdir", str(sweep.root / "results"), "--interval", "1")
    )
    sweep.start_worker()  # one worker: grid-0 first, then the slow grid-1
    sweep.wait_for(lambda: sweep.statuses()["grid-0"] == "paused", timeout=GENEROUS_S)
    retried = run_cli(cli.retry_command, "grid-retry", ["--queue", str(sweep.queue_dir), "grid-0"])
    assert retried.code == 0, retried.err
    rungs = sweep.report()["rungs"]
    assert sweep.statuses()["grid-0"] not in ("done", "stopped", "failed")
    assert (rungs["runs"], rungs["paused"], rungs["training"]) == (2, 0, 2)
    assert rungs["promoted_by_hand"] == 1
    shown = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir)])
    assert (
        "rung 1 of 1 (step 5): 0/2 runs there (0 paused, 0 final, 1 promoted past it by hand), "
        "2 still to reach it" in shown.out
    )


def test_status_says_when_an_extension_is_half_applied(
    new_sweep: Callable[..., Sweep], tmp_path: Path
) -> None:
    sweep = new_sweep(tmp_path, runs=2)
    queue = ["--queue", str(sweep.queue_dir)]
    manifest = sweep.queue.paths.extension_manifest
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"files": [], "events": []}))  # committed, not rolled forward
    shown = run_cli(cli.status_command, "grid-status", queue)
    assert "an extension of the sweep is committed but not applied yet" in shown.out
    assert json.loads(run_cli(cli.status_command, "grid-status", [*queue, "--json"]).out)[
        "extension"
    ] == ("half-applied")
    lock = sweep.queue.hold_plan(Claims(Identity.this(), sweep.queue.sweep.lease))
    assert lock is not None
    try:
        assert sweep.queue.recover_extension()
    finally:
        lock.release()
    shown = run_cli(cli.status_command, "grid-status", queue)
    assert "extension" not in shown.out
    assert (
        json.loads(run_cli(cli.status_command, "grid-status", [*queue, "--json"]).out)["extension"]
        is None
    )
