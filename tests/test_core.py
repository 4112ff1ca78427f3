"""The core without subprocesses: claim order, the cursor, broken files, the outcome policy."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest
import yaml

from mlagents_grid.claims import Claimer, claim_order
from mlagents_grid.job import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, STOPPED
from mlagents_grid.outcome import BY_KILL_FILE, BY_WORKER, ORPHANED, Outcome, decide
from mlagents_grid.planner import SweepRequest, plan_document, settle_sweep
from mlagents_grid.queue import Queue, try_lock
from mlagents_grid.trainer import INTERRUPT, KILL, TERM_GRACE, TERMINATE, StopSequence


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
    sweep, _ = settle_sweep(document, plan, SweepRequest(Path("grid.yaml"), []), str(root))
    queue = Queue(root / "q")
    queue.create(plan, sweep)
    return queue


def test_claim_order_puts_interrupted_runs_first_then_retries_in_run_order() -> None:
    order = {f"r-{i}": i for i in range(5)}
    statuses = {"r-3": PENDING, "r-4": INTERRUPTED, "r-1": None, "r-2": RUNNING, "r-0": PENDING}
    assert claim_order(statuses, order) == ["r-2", "r-4", "r-0", "r-1", "r-3"]


def test_the_cursor_passes_taken_runs_and_the_full_pass_finds_them_again(tmp_path: Path) -> None:
    queue = make_queue(tmp_path, 3)
    mine, peer = Claimer(queue, "me", 3), Claimer(queue, "peer", 3)
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
        queue.end_attempt(claim, decide(Outcome(0), 0, 3))
        claim.release()
    assert mine.next() is None and queue.all_final()


def test_an_interrupted_run_is_claimed_before_fresh_ones(tmp_path: Path) -> None:
    queue = make_queue(tmp_path, 3)
    dead = Claimer(queue, "dead", 3)
    claim = dead.next()
    assert claim is not None
    queue.start_attempt(claim, attempts=1, worker="dead")
    claim.release()  # its worker died: running, lock free
    taken = Claimer(queue, "me", 3).next()
    assert taken is not None and taken.job.run_id == "grid-0" and taken.state.attempts == 1


@pytest.mark.parametrize("broken", ["", "{", '{"run_id": 3}', "[]", "\x00\x00"])
def test_broken_state_and_final_files_are_set_aside_and_the_run_retried(
    tmp_path: Path, broken: str
) -> None:
    queue = make_queue(tmp_path, 2)
    queue.paths.state_file("grid-0").write_text(broken)
    queue.paths.final_file("grid-1").write_text(broken)
    assert queue.recorded_status("grid-1") is None  # never taken as proof of a final run
    assert not queue.all_final() or len(queue.final_ids()) < 2
    claimer = Claimer(queue, "me", 3)
    claimed = [claimer.next(), claimer.next()]
    assert sorted(c.job.run_id for c in claimed if c) == ["grid-0", "grid-1"]
    for claim in claimed:
        assert claim is not None and claim.state.status == PENDING
    assert len(claimer.notes) == 2
    assert queue.paths.state_file("grid-0").with_name("grid-0.json.unreadable").exists()
    assert not queue.paths.final_file("grid-1").exists()


@pytest.mark.parametrize(
    ("record", "expected", "claimed"),
    [
        ({"exit_code": 0, "stop": None}, DONE, False),
        ({"exit_code": 3, "stop": None}, PENDING, True),
        ({"exit_code": 0, "stop": ORPHANED}, INTERRUPTED, True),
        ({"exit_code": -signal.SIGTERM, "stop": None}, INTERRUPTED, True),
        ({"exit_code": 0, "stop": BY_KILL_FILE}, STOPPED, False),
    ],
)
def test_an_exit_record_left_by_a_dead_worker_settles_the_run(
    tmp_path: Path, record: dict[str, object], expected: str, claimed: bool
) -> None:
    queue = make_queue(tmp_path, 1)
    claim = Claimer(queue, "dead", 3).next()
    assert claim is not None
    queue.start_attempt(claim, attempts=1, worker="dead")
    if record["stop"] == BY_KILL_FILE:
        queue.request_stop("grid-0", "too low", "test")
    queue.paths.exit_file("grid-0").write_text(json.dumps({"attempt": 1, "time": 1.0, **record}))
    claim.release()
    claimer = Claimer(queue, "me", 3)
    again = claimer.next()
    assert (again is not None) == claimed
    state = again.state if again is not None else queue.read_state("grid-0")
    assert state.status == expected
    assert state.failures == (1 if expected == PENDING else 0)
    if expected == STOPPED:
        assert state.stop_reason == "too low"
    assert "after its worker died" in claimer.notes[0]


def test_an_exit_record_one_attempt_ahead_of_the_state_is_settled_too(tmp_path: Path) -> None:
    """The worker died after its trainer started but before it recorded the start."""
    queue = make_queue(tmp_path, 1)
    exit_record = {"attempt": 1, "exit_code": 0, "stop": None, "time": 2.0}
    queue.paths.exit_file("grid-0").write_text(json.dumps(exit_record))
    assert Claimer(queue, "me", 3).next() is None
    state = queue.read_state("grid-0")
    assert (state.status, state.attempts) == (DONE, 1)


def test_a_lock_lost_to_a_probe_is_taken_on_the_second_try(tmp_path: Path) -> None:
    queue = make_queue(tmp_path, 1)
    claim = Claimer(queue, "dead", 3).next()
    assert claim is not None
    queue.start_attempt(claim, attempts=1)
    claim.release()
    # A reader mid-probe: it holds the probe lock and, for an instant, the run's lock.
    probe = try_lock(queue.paths.probe_file("grid-0"))
    held = try_lock(queue.paths.lock_file("grid-0"))
    assert probe is not None and held is not None
    claimer = Claimer(queue, "me", 3)
    import threading

    def finish_probe() -> None:
        held[0].release()
        probe[0].release()

    threading.Timer(0.2, finish_probe).start()
    again = claimer.next()
    assert again is not None and again.job.run_id == "grid-0"


@pytest.mark.parametrize(
    ("outcome", "failures", "expected"),
    [
        (Outcome(0), 0, (DONE, "done", 0)),
        (Outcome(0, stop_reason="low"), 1, (STOPPED, "stopped", 1)),
        (Outcome(0, interrupted=True), 0, (INTERRUPTED, "interrupted", 0)),
        (Outcome(-signal.SIGKILL, interrupted=True), 2, (INTERRUPTED, "interrupted", 2)),
        (Outcome(None), 0, (INTERRUPTED, "interrupted", 0)),
        (Outcome(-signal.SIGTERM), 0, (INTERRUPTED, "interrupted", 0)),
        (Outcome(-signal.SIGINT), 0, (INTERRUPTED, "interrupted", 0)),
        (Outcome(-signal.SIGKILL), 0, (PENDING, "attempt-failed", 1)),
        (Outcome(1), 0, (PENDING, "attempt-failed", 1)),
        (Outcome(1), 2, (FAILED, "failed", 3)),
    ],
)
def test_the_outcome_policy(
    outcome: Outcome, failures: int, expected: tuple[str, str, int]
) -> None:
    decision = decide(outcome, failures, max_attempts=3)
    assert (decision.status, decision.event, decision.failures) == expected


def test_outcomes_from_exit_records() -> None:
    assert Outcome.from_exit_record({"exit_code": 0, "stop": BY_KILL_FILE}, None).stop_reason
    assert Outcome.from_exit_record({"exit_code": 0, "stop": BY_WORKER}, None).interrupted
    assert Outcome.from_exit_record({"exit_code": "x"}, None).exit_code is None


def test_the_stop_sequence_interrupts_once_then_terminates_then_kills() -> None:
    sequence = StopSequence(grace=3)
    assert sequence.due(100) is None and sequence.deadline() is None
    assert sequence.ask(10) == INTERRUPT
    assert sequence.ask(11) is None  # never a second SIGINT
    assert sequence.deadline() == 13
    assert sequence.due(12.9) is None
    assert sequence.due(13) == TERMINATE
    assert sequence.deadline() == 13 + TERM_GRACE
    assert sequence.due(13 + TERM_GRACE - 0.1) is None
    assert sequence.due(13 + TERM_GRACE) == KILL
    assert sequence.due(1000) is None and sequence.deadline() is None
    forced = StopSequence(grace=60)
    assert forced.force(5) == KILL and forced.force(6) is None and forced.due(100) is None


def test_a_worker_that_died_with_a_reply_unread_is_gone_not_a_launcher_crash() -> None:
    """Its socket then reads ECONNRESET, not EOF; the launcher must live on for its trainers."""
    import socket

    from mlagents_grid.launcher import Supervisor, _handle

    worker, launcher = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    launcher.send(b'{"pid": 1}')  # a reply the worker never read
    worker.close()
    assert _handle(launcher, Supervisor()) is False
    launcher.close()
