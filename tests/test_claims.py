"""Claims seen through the tools, in process: grid-status showing a remote owner's lapsed
lease, grid-stop of a paused run. The claim core's own tests are in tests/unit/test_claims.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlagents_grid.errors import GridError
from mlagents_grid.queue import transitions
from mlagents_grid.queue.job import STOPPED, JobState
from mlagents_grid.queue.ownership import Claims, Hold, Identity

from .unit.test_claims import LEASE, owner


def test_grid_status_shows_a_remote_owners_lapsed_lease(tmp_path: Path) -> None:
    from mlagents_grid import cli

    from .conftest import run_cli
    from .unit.test_core import make_queue

    queue = make_queue(tmp_path, 1)
    folder = queue.claim_folder("grid-0")
    stale = owner(host="faraway", generation=1, time=1000.0, lease=120.0)
    assert folder.create(stale)
    hold = Hold(folder, stale)
    assert queue.ledger.write(hold, transitions.started(JobState("grid-0"), attempts=1))
    shown = run_cli(cli.status_command, "grid-status", ["--queue", str(queue.root), "--json"])
    row = json.loads(shown.out)["runs"][0]
    assert row["status"] == "interrupted"  # its owner's clock says the lease lapsed long ago
    assert row["lease"] == {
        "owner": "faraway:100",
        "renewed": 1000.0,
        "seconds": 120.0,
        "expired": True,
    }
    table = run_cli(cli.status_command, "grid-status", ["--queue", str(queue.root)])
    assert "lease of faraway:100 expired" in table.out


def test_grid_stop_of_a_paused_run_leaves_no_pause_request_behind(tmp_path: Path) -> None:
    from mlagents_grid.queue.claims import Claimer

    from .unit.test_core import make_queue

    queue = make_queue(tmp_path, 1)
    mine = Claims(Identity.this(), LEASE)
    hold = mine.take(queue.claim_folder("grid-0"))
    assert hold is not None
    paused = transitions.ended(JobState("grid-0", attempts=1), _paused())
    assert queue.ledger.write(hold, paused)
    hold.release()
    assert queue.request_pause("grid-0", 1, 10, "test")
    assert queue.request_stop("grid-0", "by hand", "test")
    Claimer(queue, mine).carry_out_waiting("grid-0")
    state = queue.state_of("grid-0")
    assert (state.status, state.stop_reason) == (STOPPED, "by hand")
    assert not queue.paths.pause_file("grid-0").exists()
    assert queue.paths.kill_file("grid-0").exists()  # a stopped run keeps its stop request


def _paused() -> Any:
    from mlagents_grid.queue.outcome import Outcome, decide

    return decide(Outcome(0, paused=True), 0, 3)


def test_grid_retry_waits_for_the_worker_that_still_lets_go_of_a_stopped_run(
    tmp_path: Path,
) -> None:
    """The final state is written a moment before the claim is released (the last events):
    a retry in that moment waits for the release instead of calling the run running."""
    import threading

    from mlagents_grid.queue.outcome import Outcome, decide
    from mlagents_grid.queue.retry import retry_runs

    from .unit.test_core import make_queue

    queue = make_queue(tmp_path, 2)
    mine = Claims(Identity.this(), LEASE)
    hold = mine.take(queue.claim_folder("grid-0"))
    assert hold is not None
    assert queue.ledger.write(hold, transitions.started(JobState("grid-0"), attempts=1))
    stopped = transitions.ended(
        queue.state_of("grid-0"), decide(Outcome(-2, stop_reason="by hand"), 0, 3)
    )
    assert queue.ledger.write(hold, stopped)
    assert queue.state_of("grid-0").status == STOPPED
    releaser = threading.Timer(1.0, hold.release)
    releaser.start()
    try:
        (retried,) = retry_runs(queue, mine, ["grid-0"], "by hand")
    finally:
        releaser.join()
    assert (retried.status, retried.retries) == ("pending", 1)
    # A run that still trains is refused at once, without waiting for its claim.
    other = mine.take(queue.claim_folder("grid-1"))
    assert other is not None
    assert queue.ledger.write(other, transitions.started(JobState("grid-1"), attempts=1))
    try:
        retry_runs(queue, mine, ["grid-1"], "by hand")
    except GridError as refused:
        assert "grid-1 is running" in str(refused)
    else:
        raise AssertionError("a running run was retried")
    finally:
        other.release()
