"""The core without subprocesses: claim order, the cursor, broken files, exit records."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest
import yaml

from mlagents_grid.errors import GridError
from mlagents_grid.plan.document import plan_document
from mlagents_grid.plan.sweep import SweepRequest, checked_sweep
from mlagents_grid.queue import transitions
from mlagents_grid.queue.claims import Claimer, claim_order
from mlagents_grid.queue.folder import Claim, Queue
from mlagents_grid.queue.job import DONE, INTERRUPTED, PENDING, RUNNING, STOPPED
from mlagents_grid.queue.outcome import Outcome, StopBy, decide
from mlagents_grid.queue.ownership import Claims, Host, Identity, Process

LEASE = 120.0
# A process that has ended: a claim it holds is judged dead on this host at once.
GONE = Process(2**22 + 17, 1.0)


def claims(dead: bool = False) -> Claims:
    """Claims of this process, or of a process that is gone (a worker killed mid-claim)."""
    identity = Identity.this()
    if dead:
        identity = Identity(Host.this(), GONE)
    return Claims(identity, LEASE)


def finish(queue: Queue, claim: Claim, outcome: Outcome) -> None:
    decision = decide(outcome, claim.state.failures, 3)
    assert queue.ledger.write(claim.hold, transitions.ended(claim.state, decision), claim.stale)
    claim.release()


def start(queue: Queue, claim: Claim, **fields: object) -> None:
    change = transitions.started(claim.state, **fields)
    assert queue.ledger.write(claim.hold, change, claim.stale)
    claim.state = change.state


def make_queue(root: Path, runs: int) -> Queue:
    values = ", ".join(str(i) for i in range(runs))
    document = yaml.safe_load(
        textwrap.dedent(
            f"""\
            behaviors:
              B: {{trainer_type: ppo, max_steps: 10}}
            environment_parameters:
              index: {{opt_values: [{values}]}}
            """
        )
    )
    plan = plan_document(document, "grid.yaml", "grid")
    sweep, _ = checked_sweep(document, plan, SweepRequest(Path("grid.yaml"), []), str(root))
    queue = Queue(root / "q")
    queue.create(plan, sweep)
    return queue


def test_claim_order_puts_interrupted_runs_first_then_retries_in_run_order() -> None:
    order = {f"r-{i}": i for i in range(5)}
    statuses = {"r-3": PENDING, "r-4": INTERRUPTED, "r-1": None, "r-2": RUNNING, "r-0": PENDING}
    assert claim_order(statuses, order) == ["r-2", "r-4", "r-0", "r-1", "r-3"]


def test_the_cursor_passes_taken_runs_and_the_full_pass_finds_them_again(tmp_path: Path) -> None:
    queue = make_queue(tmp_path, 3)
    mine, peer = Claimer(queue, claims()), Claimer(queue, claims())
    held = peer.next()
    assert held is not None and held.job.run_id == "grid-0"
    first, second = mine.next(), mine.next()
    assert (first and first.job.run_id, second and second.job.run_id) == ("grid-1", "grid-2")
    assert mine.next() is None  # grid-0 is held by the peer
    held.release()  # the peer let go without starting it: the full pass must find it
    again = mine.next()
    assert again is not None and again.job.run_id == "grid-0"
    for claim in (first, second, again):
        assert claim is not None
        finish(queue, claim, Outcome(0))
    assert mine.next() is None and queue.all_final()


def test_an_interrupted_run_is_claimed_before_fresh_ones(tmp_path: Path) -> None:
    queue = make_queue(tmp_path, 3)
    claim = Claimer(queue, claims(dead=True)).next()
    assert claim is not None
    start(queue, claim, attempts=1, worker="dead")  # its worker then died: running, owner gone
    taken = Claimer(queue, claims()).next()
    assert taken is not None and taken.job.run_id == "grid-0" and taken.state.attempts == 1
    taken_over = [e for e in queue.events() if e["event"] == "taken-over"]
    assert [e["previous"] for e in taken_over] == [claim.hold.owner.by]


@pytest.mark.parametrize("broken", ["", "{", '{"run_id": 3}', "[]", "\x00\x00"])
def test_broken_state_and_final_files_are_set_aside_and_the_run_retried(
    tmp_path: Path, broken: str
) -> None:
    queue = make_queue(tmp_path, 2)
    queue.paths.state_file("grid-0", 0).write_text(broken)
    queue.paths.final_file("grid-1", 0).write_text(broken)
    # Never taken as proof of a final run.
    assert isinstance(queue.states(queue.snapshot())["grid-1"], GridError)
    claimer = Claimer(queue, claims())
    claimed = [claimer.next(), claimer.next()]
    assert sorted(c.job.run_id for c in claimed if c) == ["grid-0", "grid-1"]
    for claim in claimed:
        assert claim is not None and claim.state.status == PENDING
    assert len(claimer.notes) == 2
    assert (queue.paths.state_dir / "grid-0.json.unreadable").exists()
    assert not queue.paths.final_file("grid-1", 0).exists()


@pytest.mark.parametrize(
    ("record", "expected", "claimed"),
    [
        ({"exit_code": 0, "stop": None}, DONE, False),
        ({"exit_code": 3, "stop": None}, PENDING, True),
        ({"exit_code": 0, "stop": StopBy.ORPHANED}, INTERRUPTED, True),
        ({"exit_code": -signal.SIGTERM, "stop": None}, INTERRUPTED, True),
        ({"exit_code": 0, "stop": StopBy.KILL_FILE}, STOPPED, False),
    ],
)
def test_an_exit_record_left_by_a_dead_worker_settles_the_run(
    tmp_path: Path, record: dict[str, object], expected: str, claimed: bool
) -> None:
    queue = make_queue(tmp_path, 1)
    claim = Claimer(queue, claims(dead=True)).next()
    assert claim is not None
    start(queue, claim, attempts=1, worker="dead")
    if record["stop"] == StopBy.KILL_FILE:
        queue.request_stop("grid-0", "too low", "test")
    exit_file = queue.paths.exit_file("grid-0", claim.hold.generation)
    exit_file.write_text(json.dumps({"attempt": 1, "time": 1.0, **record}))
    claimer = Claimer(queue, claims())
    again = claimer.next()
    assert (again is not None) == claimed
    state = again.state if again is not None else queue.state_of("grid-0")
    assert state.status == expected
    assert state.failures == (1 if expected == PENDING else 0)
    if expected == STOPPED:
        assert state.stop_reason == "too low"
    assert any("after its worker died" in note for note in claimer.notes)


def test_an_exit_record_one_attempt_ahead_of_the_state_is_settled_too(tmp_path: Path) -> None:
    """The worker died after its trainer started but before it recorded the start."""
    queue = make_queue(tmp_path, 1)
    dead = Claimer(queue, claims(dead=True)).next()
    assert dead is not None
    exit_record = {"attempt": 1, "exit_code": 0, "stop": None, "time": 2.0}
    queue.paths.exit_file("grid-0", dead.hold.generation).write_text(json.dumps(exit_record))
    assert Claimer(queue, claims()).next() is None
    state = queue.state_of("grid-0")
    assert (state.status, state.attempts) == (DONE, 1)
