"""Claims without processes: who owns a run (ownership.judge), leases seen over time, renewal
and its deadline, atomic creation, fencing of late writers, and the claimer's one decision
(transitions.claim_steps), one table row per case."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid.queue import transitions
from mlagents_grid.queue.job import (
    DONE,
    INTERRUPTED,
    PAUSED,
    PENDING,
    RUNNING,
    STOPPED,
    Job,
    JobState,
    Status,
)
from mlagents_grid.queue.layout import Layout, generation_name, parse_generation_name
from mlagents_grid.queue.ledger import Ledger
from mlagents_grid.queue.outcome import StopBy
from mlagents_grid.queue.ownership import (
    Beat,
    ClaimFolder,
    Claims,
    Hold,
    Host,
    Identity,
    Liveness,
    Observer,
    Owner,
    Process,
    Renewal,
    Seen,
    judge,
    view_owner,
)
from mlagents_grid.queue.rung_decision import RankedPoint, RungDecision
from mlagents_grid.queue.transitions import RunView, Unreadable, claim_steps

HERE = Host("alpha", "1b4e28ba-2fa1-11d2-883f-0016d3cca427")
WORKER, LAUNCHER, TRAINER = Process(100, 1.0), Process(101, 2.0), Process(102, 3.0)
LEASE = 60.0


def owner(host: str = "alpha", boot: str = HERE.boot, **changes: Any) -> Owner:
    base = Owner(
        name="grid-0",
        generation=3,
        token="abc",
        host=host,
        boot=boot,
        claimer=WORKER,
        launcher=LAUNCHER,
        lease=LEASE,
        by=f"{host}:100",
        time=1000.0,
    )
    return dataclasses.replace(base, **changes)


def seen(record: Owner | str | None, trainer: Process | None = None) -> Seen:
    text = record.to_json() if isinstance(record, Owner) else record
    beat = Beat(1, 101, 1010.0, trainer).to_json() if trainer is not None else None
    return Seen(3, text, beat)


@pytest.mark.parametrize(
    ("case", "look", "alive", "unchanged_for", "expected"),
    [
        ("never claimed", Seen(0), set(), 0.0, Liveness.FREE),
        ("released", seen(owner(released=True)), set(), 0.0, Liveness.FREE),
        ("here, worker alive", seen(owner()), {WORKER}, 0.0, Liveness.HELD),
        ("here, only the launcher alive", seen(owner()), {LAUNCHER}, 0.0, Liveness.HELD),
        ("here, only the trainer alive", seen(owner(), TRAINER), {TRAINER}, 0.0, Liveness.HELD),
        ("here, every keeper gone", seen(owner(), TRAINER), set(), 0.0, Liveness.DEAD),
        (
            "here, the launcher lives on, its trainer's end recorded",
            Seen(3, owner().to_json(), Beat(4, 101, 1020.0, None, ended=True).to_json()),
            {LAUNCHER},
            0.0,
            Liveness.DEAD,
        ),
        ("here, a pid reused", seen(owner()), {Process(100, 9.0)}, 0.0, Liveness.DEAD),
        (
            "this host's name, an ended boot",
            seen(owner(boot="00000000-0000-0000-0000-000000000000")),
            {WORKER},
            0.0,
            Liveness.DEAD,
        ),
        ("another host, just seen", seen(owner(host="beta")), set(), 0.0, Liveness.HELD),
        ("another host, within the lease", seen(owner(host="beta")), set(), 59.9, Liveness.HELD),
        ("another host, a whole lease", seen(owner(host="beta")), set(), 60.0, Liveness.EXPIRED),
        (
            "another host's longer lease counts",
            seen(owner(host="beta", lease=90.0)),
            set(),
            60.0,
            Liveness.HELD,
        ),
        ("a record being written", seen("{"), set(), 10.0, Liveness.HELD),
        ("a record cut off for a lease", seen(""), set(), 60.0, Liveness.EXPIRED),
    ],
)
def test_who_owns_a_claim(
    case: str, look: Seen, alive: set[Process], unchanged_for: float, expected: Liveness
) -> None:
    assert judge(look, HERE, alive.__contains__, unchanged_for, LEASE) == expected, case


def test_a_remote_lease_lapses_only_after_a_whole_lease_unchanged_on_the_observers_clock() -> None:
    now = [0.0]
    observer = Observer(clock=lambda: now[0])
    first = seen(owner(host="beta"))
    assert observer.unchanged_for("q", first) == 0.0
    now[0] = 40.0
    assert observer.unchanged_for("q", first) == 40.0
    renewed = Seen(3, first.record_text, Beat(2, 7, 5.0).to_json())  # the owner renewed
    assert observer.unchanged_for("q", renewed) == 0.0
    now[0] = 99.0
    assert observer.unchanged_for("q", renewed) == 59.0
    now[0] = 100.0
    assert observer.unchanged_for("q", renewed) == 60.0


def test_status_shows_a_remote_lease_as_lapsed_by_the_renewers_clock_only() -> None:
    look = seen(owner(host="beta"), TRAINER)  # renewed at 1010 by the renewer's clock
    fresh = view_owner(look, HERE, lambda _p: False, now=1050.0, lease=LEASE)
    assert (fresh.by, fresh.renewed, fresh.liveness) == ("beta:100", 1010.0, Liveness.HELD)
    stale = view_owner(look, HERE, lambda _p: False, now=1071.0, lease=LEASE)
    assert stale.liveness == Liveness.EXPIRED


def test_renewal_keeps_the_lease_and_gives_up_after_half_of_it(tmp_path: Path) -> None:
    folder = ClaimFolder(tmp_path / "claims" / "grid-0", "grid-0")
    record = owner(generation=1, lease=12.0)
    assert folder.create(record)
    now = [0.0]
    renewal = Renewal(Hold(folder, record), trainer=TRAINER, clock=lambda: now[0])
    assert renewal.interval == 2.0
    now[0] = 2.0
    assert renewal.tick() is None
    beat = Beat.from_json(folder.beat_file(1).read_text())
    assert beat is not None and beat.count == 1 and beat.trainer == TRAINER
    now[0] = 7.9  # frozen for 5.9 s: still within half the lease
    assert renewal.tick() is None
    now[0] = 14.0  # frozen for 6.1 s: a peer may be counting; stop
    assert renewal.tick() is not None
    assert renewal.tick() is not None  # and it stays lost


def test_renewal_stops_at_once_when_a_newer_claim_exists(tmp_path: Path) -> None:
    folder = ClaimFolder(tmp_path / "claims" / "grid-0", "grid-0")
    record = owner(generation=1)
    assert folder.create(record)
    now = [0.0]
    renewal = Renewal(Hold(folder, record), clock=lambda: now[0])
    assert folder.create(owner(generation=2, host="beta"))  # a peer took over
    now[0] = 1.0
    assert renewal.tick() == "another worker took the run over"
    assert not folder.beat_file(1).exists()


@pytest.mark.parametrize("links", [True, False])
def test_one_claim_of_a_generation_wins_among_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """With hard links, or with O_EXCL where a filesystem refuses them (SMB, FUSE)."""
    if not links:

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", refuse)
    folder = ClaimFolder(tmp_path / "claims" / "grid-0", "grid-0")
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def contend(k: int) -> None:
        barrier.wait()
        if folder.create(owner(generation=1, token=f"t{k}")):
            wins.append(k)

    threads = [threading.Thread(target=contend, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    written = Owner.from_json(folder.record(1).read_text())
    assert written is not None and written.token == f"t{wins[0]}"
    assert sorted(p.name for p in folder.path.iterdir()) == ["g1.json"]


def test_a_claim_is_taken_over_only_from_a_gone_owner_and_its_generation_grows(
    tmp_path: Path,
) -> None:
    folder = ClaimFolder(tmp_path / "claims" / "grid-0", "grid-0")
    gone = Claims(Identity(Host.this(), Process(2**22 + 5, 1.0)), LEASE)
    first = gone.take(folder)
    assert first is not None and first.generation == 1
    first.wrote = True  # it wrote, then died without letting go
    mine = Claims(Identity.this(), LEASE)
    second = mine.take(folder)
    assert second is not None and second.generation == 2
    assert second.taken_over is not None and second.taken_over.by == first.owner.by
    assert mine.take(folder) is None  # held by this live process
    assert first.fenced() and not second.fenced()
    second.wrote = True
    second.release()
    third = mine.take(folder)
    assert third is not None and third.generation == 3 and third.taken_over is None


def test_a_claim_that_wrote_nothing_is_withdrawn_and_its_number_used_again(tmp_path: Path) -> None:
    folder = ClaimFolder(tmp_path / "claims" / "grid-0", "grid-0")
    mine = Claims(Identity.this(), LEASE)
    hold = mine.take(folder)
    assert hold is not None and hold.generation == 1
    hold.release()
    assert folder.generations() == []
    again = mine.take(folder)
    assert again is not None and again.generation == 1


def test_a_late_writer_never_overwrites_the_new_owners_state(tmp_path: Path) -> None:
    """Fencing: the taken-over owner's write is refused, and readers take the newest."""
    paths = Layout(tmp_path)
    for name in ("state", "final"):
        (tmp_path / name).mkdir()
    (tmp_path / "events.jsonl").touch()
    ledger = Ledger(paths)
    claim = ClaimFolder(paths.claim_folder("grid-0"), "grid-0")
    old = Hold(claim, owner(generation=1))
    new = Hold(claim, owner(generation=2, host="beta"))
    assert claim.create(old.owner) and claim.create(new.owner)
    running = transitions.started(JobState("grid-0"), attempts=1)
    assert ledger.write(new, running)
    done = transitions.ended(running.state, _decision(DONE))
    assert not ledger.write(old, done)  # taken over: nothing written
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["grid-0.g2.json"]
    assert list((tmp_path / "final").iterdir()) == []
    # Even a write that slipped past the check lands under its own, older generation.
    (tmp_path / "final" / "grid-0.g1.json").write_text(done.state.to_json())
    from mlagents_grid.queue.folder import Queue

    refs = Queue(tmp_path).snapshot()
    assert (refs["grid-0"].generation, refs["grid-0"].final) == (2, False)


def _decision(status: Status) -> Any:
    from mlagents_grid.queue.outcome import Outcome, decide

    outcomes = {DONE: Outcome(0), STOPPED: Outcome(0, stop_reason="x")}
    return decide(outcomes[status], 0, 3)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("grid-4.g12.json", ("grid-4", 12)),
        ("grid-4.json", ("grid-4", 0)),
        ("my.game-3.json", ("my.game-3", 0)),
        ("my.game-3.g2.json", ("my.game-3", 2)),
        ("3DBall-4-s1.g1.json", ("3DBall-4-s1", 1)),
        (".grid-4.g2.json.77.tmp", None),
        ("grid-4.json.unreadable", None),
    ],
)
def test_state_file_names_carry_their_generation(name: str, parsed: tuple[str, int] | None) -> None:
    assert parse_generation_name(name) == parsed
    if parsed is not None:
        assert generation_name(*parsed) == name


# -- the claimer's decision ----------------------------------------------------------------
JOB = Job("grid-1", 1, {}, (), (), point=1)
BY = "beta:9"


def decision(promoted: bool) -> dict[int, RungDecision]:
    ranked = (
        RankedPoint(
            point=1,
            runs=("grid-1",),
            score=0.9 if promoted else 0.1,
            rank=1,
            promoted=promoted,
            eligible=True,
            reason="rung 1: kept",
        ),
    )
    return {1: RungDecision(1, 100, 0.5, 0.5, ranked)}


def view(**given: Any) -> RunView:
    given.setdefault("job", JOB)
    state = given.pop("state", {})
    given["state"] = JobState("grid-1", **state)
    return RunView(**given)


RUNNING_1 = {"status": RUNNING, "attempts": 1}
# Each row: the view, then (statuses the changes lead to, whether it trains, events).
STEPS = {
    "fresh": (view(), ([], True, [])),
    "interrupted": (view(state={"status": INTERRUPTED, "attempts": 2}), ([], True, [])),
    "final": (view(state={"status": DONE}), ([], False, [])),
    "a dead worker's trainer finished": (
        view(state=RUNNING_1, exit={"attempt": 1, "exit_code": 0, "stop": None, "time": 5.0}),
        ([DONE], False, ["done"]),
    ),
    "a dead worker's trainer crashed": (
        view(state=RUNNING_1, exit={"attempt": 1, "exit_code": 3, "stop": None}),
        ([PENDING], True, ["attempt-failed"]),
    ),
    "orphaned: interrupted, then trained": (
        view(state=RUNNING_1, exit={"attempt": 1, "exit_code": 0, "stop": StopBy.ORPHANED}),
        ([INTERRUPTED], True, ["interrupted"]),
    ),
    "the exit record one attempt ahead": (
        view(state={"status": PENDING}, exit={"attempt": 1, "exit_code": 0, "stop": None}),
        ([DONE], False, ["done"]),
    ),
    "an exit already recorded": (
        view(state={"status": INTERRUPTED, "attempts": 1}, exit={"attempt": 1, "exit_code": 0}),
        ([], True, []),
    ),
    "stopped by its kill file after it ended": (
        view(
            state=RUNNING_1,
            exit={"attempt": 1, "exit_code": 0, "stop": StopBy.KILL_FILE},
            kill_reason="too low",
        ),
        ([STOPPED], False, ["stopped"]),
    ),
    "a stop request, nobody trains it": (
        view(kill_reason="by hand"),
        ([STOPPED], False, ["stopped"]),
    ),
    "a stop request for an interrupted run": (
        view(state={"status": INTERRUPTED, "attempts": 1}, kill_reason="by hand"),
        ([STOPPED], False, ["stopped"]),
    ),
    "paused, its rung undecided: it waits": (
        view(state={"status": PAUSED}, rungs=True),
        ([], False, []),
    ),
    "paused, promoted": (
        view(state={"status": PAUSED}, rungs=True, decisions=decision(True)),
        ([PENDING], True, ["promoted"]),
    ),
    "paused, not promoted": (
        view(state={"status": PAUSED}, rungs=True, decisions=decision(False)),
        ([STOPPED], False, ["stopped"]),
    ),
    "paused at a rung decided without it": (
        view(
            job=Job("grid-7", 7, {}, (), (), point=7),
            state={"status": PAUSED},
            rungs=True,
            decisions=decision(False),
        ),
        ([PENDING], True, ["promoted"]),
    ),
    "paused by its trainer's last exit, then promoted": (
        view(
            state=RUNNING_1,
            exit={"attempt": 1, "exit_code": 0, "stop": StopBy.PAUSE},
            rungs=True,
            decisions=decision(True),
        ),
        ([PAUSED, PENDING], True, ["paused", "promoted"]),
    ),
    "a fresh run passes a rung decided without it": (
        view(job=Job("grid-7", 7, {}, (), (), point=7), rungs=True, decisions=decision(False)),
        ([PENDING], True, ["promoted"]),
    ),
    "a seed of a point stopped at the rung trains up to it": (
        view(job=Job("grid-1-s2", 2, {}, (), (), point=1), rungs=True, decisions=decision(False)),
        ([], True, []),
    ),
    "unreadable files are set aside, then it trains": (
        view(unreadable=(Unreadable("state/grid-1.g2.json", "cut off"),)),
        ([], True, []),
    ),
}


@pytest.mark.parametrize("case", list(STEPS))
def test_what_a_claimer_does_with_what_it_read(case: str) -> None:
    given, (statuses, train, events) = STEPS[case]
    steps = claim_steps(given, max_attempts=3, by=BY)
    assert [c.state.status for c in steps.changes] == statuses
    assert steps.train == train
    assert [str(e) for c in steps.changes for e, _ in c.events] == events
    assert steps.unreadable == given.unreadable


def test_a_seed_added_after_its_points_rung_verdict_is_stopped_with_the_points_reason() -> None:
    seed = view(
        job=Job("grid-1-s2", 2, {}, (), (), point=1),
        state={"status": PAUSED},
        rungs=True,
        decisions=decision(False),
    )
    steps = claim_steps(seed, max_attempts=3, by=BY)
    assert steps.state is not None and steps.state.status == STOPPED
    assert steps.state.stop_reason == "rung 1: kept (its grid point's verdict)"


def test_a_retried_rung_loser_is_promoted_past_its_rung() -> None:
    stopped = JobState("grid-1", status=STOPPED, stop_reason="rung 1: cut", rung=0, attempts=2)
    change = transitions.retried(stopped, "again", stopped_by_rung=True)
    assert (change.state.status, change.state.rung, change.state.retries) == (PENDING, 1, 1)
    assert change.answers == ("pause", "kill")
    event, details = change.events[0]
    assert (str(event), details["previous"], details["rung"]) == ("retried", STOPPED, 1)


def test_every_change_serialises_its_events_as_plain_json() -> None:
    change = transitions.stopped_by_request(JobState("grid-1"), "by hand", BY)
    line = json.dumps({"event": change.events[0][0], **change.events[0][1]})
    assert json.loads(line) == {"event": "stopped", "reason": "by hand"}
