"""The claim protocol: how a worker finds and locks its next run. Owned by one worker.

A run is claimed by taking its lock without blocking; the lock then travels to the run's
trainer and is held for as long as it lives. Claiming also settles what others left
behind: a stop request for a run nobody trains, the recorded end of a trainer whose worker
died before writing it down, and state files a crash left unreadable.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from .errors import GridError
from .job import FINAL, INTERRUPTED, PAUSED, RUNNING, JobState
from .outcome import Outcome, decide
from .queue import PROBE_POLL, PROBE_WAIT, Claim, Queue, host_name, try_lock
from .rungs import passed_rungs, passes, run_verdict
from .wakeup import Wakeup

# Runs whose worker may have died: their lock may be probed by readers (status, monitor).
TAKEN_OVER = (RUNNING, INTERRUPTED)


def claim_order(statuses: dict[str, str | None], order: dict[str, int]) -> list[str]:
    """Started runs to try first: interrupted ones, then retries and promoted runs (pending
    again), each in run order. Paused runs are left out: they wait for their rung."""
    statuses = {r: s for r, s in statuses.items() if s != PAUSED}
    ranked = sorted(statuses, key=lambda run_id: order.get(run_id, len(order)))
    first = [r for r in ranked if statuses[r] in TAKEN_OVER]
    return first + [r for r in ranked if statuses[r] not in TAKEN_OVER]


def _unrecorded(record: dict[str, Any], state: JobState) -> bool:
    """Whether an exit record tells of an attempt whose end the run's state does not know.

    Its worker died after the trainer ended (the state says running that attempt), or
    even before it recorded the start (the record is one attempt ahead).
    """
    attempt = record.get("attempt")
    if not isinstance(attempt, int):
        return False
    if state.status == RUNNING and attempt == state.attempts:
        return True
    return attempt == state.attempts + 1


def _trained_here(state: JobState | None) -> bool:
    """Whether a live worker process of this host records the run as its own, running.

    Trying its lock would fail anyway; the full pass at the end still tries every run, so a
    worker that died and whose pid was reused is not passed over for good.
    """
    if state is None or state.status != RUNNING or not state.worker:
        return False
    host, _, pid = state.worker.rpartition(":")
    return host == host_name() and pid.isdigit() and psutil.pid_exists(int(pid))


class Claimer:
    """Claims for one worker; keeps a cursor so a claim costs a few file checks.

    Fresh runs come from a cursor over the run order that passes runs found final or taken;
    once it is through, a full pass over final/ and state/ finds any run passed while
    another worker held it.
    """

    def __init__(self, queue: Queue, worker: str, max_attempts: int) -> None:
        self.queue = queue
        self.worker = worker
        self.max_attempts = max_attempts
        # Runs that cannot be claimed (a broken job file), each with its one-line reason.
        self.problems: dict[str, str] = {}
        # What claiming settled or repaired, for the worker to tell (drained by it).
        self.notes: list[str] = []
        self._index: dict[str, int] | None = None
        self._indexed: object = None
        self._cursor = 0
        self._awaited: set[str] = set()

    def _order(self) -> dict[str, int]:
        # A sweep grown by --extend is a new Sweep object with more run ids: index it again.
        # Run ids are only ever appended, so the cursor stays where it is.
        sweep = self.queue.sweep
        if self._index is None or self._indexed is not sweep:
            self._index = {run_id: i for i, run_id in enumerate(sweep.run_ids)}
            self._indexed = sweep
        return self._index

    def next(self) -> Claim | None:
        """Lock the next claimable run: interrupted ones first, then retries, then pending."""
        paths = self.queue.paths
        started = [r for r in self.queue.active_ids() if not paths.final_file(r).exists()]
        states = {r: self.queue.recorded_state(r) for r in started}
        statuses = {r: None if s is None else s.status for r, s in states.items()}
        # Paused runs wait for their rung; once it is decided, whoever claims first carries
        # out the decision (promoted: trained now; not promoted: stopped).
        decided = (
            self.queue.decided_rungs() if any(s == PAUSED for s in statuses.values()) else set()
        )
        waiting = {
            r
            for r, s in states.items()
            if s is not None and s.status == PAUSED and s.rung + 1 not in decided
        }
        for run_id in claim_order(statuses, self._order()) + sorted(
            set(r for r, s in statuses.items() if s == PAUSED) - waiting
        ):
            if _trained_here(states[run_id]):
                continue  # a live peer on this host trains it: no lock to try
            claim = self._try(run_id, probed=statuses[run_id] in TAKEN_OVER)
            if claim is not None:
                return claim
        run_ids = self.queue.sweep.run_ids
        skip = set(started)
        while self._cursor < len(run_ids):
            run_id = run_ids[self._cursor]
            self._cursor += 1
            if run_id in skip:
                continue
            if paths.final_file(run_id).exists():
                if self.queue.recorded_status(run_id) is not None:
                    continue  # final; an unreadable final file is retried below
            elif paths.lock_file(run_id).exists():
                # Another worker's claim in progress (or a claimer that died at once, which
                # the full pass below picks up).
                continue
            claim = self._try(run_id)
            if claim is not None:
                return claim
        final = set(self.queue.final_ids())
        for run_id in run_ids:
            if run_id not in final and run_id not in waiting:
                claim = self._try(run_id, probed=run_id in skip)
                if claim is not None:
                    return claim
        return None

    def settle(self, run_id: str) -> None:
        """Settle what a run nobody trains needs (a stop request: it is recorded stopped)."""
        claim = self._try(run_id, probed=True)
        if claim is not None:
            claim.release()

    def _try(self, run_id: str, probed: bool = False) -> Claim | None:
        if run_id in self.problems:
            return None
        taken = self._lock(run_id, probed)
        if taken is None:
            return None
        lock, fd = taken
        if self._trainer_lives(run_id):
            lock.release()
            return None
        try:
            claim = self._settle(run_id, Claim(self.queue.job(run_id), JobState(run_id), lock, fd))
        except GridError as exc:
            lock.release()
            self.problems[run_id] = str(exc)
            return None
        except BaseException:
            lock.release()
            raise
        if claim is None:
            lock.release()
        return claim

    def _trainer_lives(self, run_id: str) -> bool:
        """Whether a runner still holds the run's live lock (Windows: its worker died).

        On POSIX the run's lock itself travels to the trainer; on Windows it cannot, so the
        runner holds this second lock for as long as it lives.
        """
        live = self.queue.paths.live_file(run_id)
        if not live.exists():
            return False
        taken = try_lock(live)
        if taken is None:
            return True
        taken[0].release()
        return False

    def _lock(self, run_id: str, probed: bool) -> tuple[Any, int] | None:
        """The run's lock; a lock lost to a reader's probe is tried again once it is done."""
        path = self.queue.paths.lock_file(run_id)
        taken = try_lock(path)
        if taken is not None or not probed:
            return taken
        probe = try_lock(self.queue.paths.probe_file(run_id), timeout=PROBE_WAIT, poll=PROBE_POLL)
        if probe is None:
            return None
        try:
            return try_lock(path)
        finally:
            probe[0].release()

    def _settle(self, run_id: str, claim: Claim) -> Claim | None:
        """What the locked run needs before it may start; None when it must not start."""
        paths = self.queue.paths
        for path in (paths.final_file(run_id), paths.state_file(run_id)):
            if not path.exists():
                continue
            try:
                claim.state = self.queue.read_state(run_id)
                break
            except GridError as exc:
                kept = self.queue.set_aside(path, str(exc), self.worker)
                self.notes.append(f"{run_id}: {path} was unreadable; kept as {kept.name}, retrying")
        if claim.state.status in FINAL:
            return None
        record = self.queue.read_exit(run_id)
        if record is not None and _unrecorded(record, claim.state):
            return self._settle_exit(claim, record)
        reason = self.queue.kill_reason(run_id)
        if reason is not None:
            self.queue.settle_stop_request(claim, reason, self.worker)
            return None
        if claim.state.status == PAUSED:
            return self._settle_paused(claim)
        self._pass_decided_rungs(claim)
        return claim

    def _pass_decided_rungs(self, claim: Claim) -> None:
        """A run about to train past rungs decided without it (a point or seed added by
        --extend, a run retried after its rung was decided) passes them now, so that it
        trains to the first rung not yet decided (or the one that decided against its point)
        instead of pausing at each."""
        if self.queue.sweep.rung_plan is None or not self.queue.decided_rungs():
            return
        decisions = self.queue.rung_decisions()
        run_id, point = claim.job.run_id, claim.job.point
        target = passed_rungs(claim.state.rung, decisions, run_id, point)
        if target > claim.state.rung:
            self.queue.pass_rungs(claim, target, self.worker)

    def _settle_paused(self, claim: Claim) -> Claim | None:
        """Carry out the decision of the rung the run is paused at, once there is one."""
        number = claim.state.rung + 1
        decision = self.queue.rung_decision(number)
        if decision is None:
            return None  # the rung is not decided yet
        run_id = claim.job.run_id
        verdict = run_verdict(decision, run_id, claim.job.point)
        if verdict is not None and not passes(decision, run_id, claim.job.point):
            if decision.verdict_for(run_id) is None:  # a seed added after the decision
                reason = f"{verdict.reason} (its grid point's verdict)"
            else:
                reason = verdict.reason
            self.queue.stop_at_rung(claim, number, reason, self.worker)
            return None
        # Promoted; or paused after its rung was decided without it (never left behind).
        reason = (
            verdict.reason
            if verdict is not None and verdict.eligible
            else f"rung {number}: decided without it; continues"
        )
        self.queue.promote(claim, number, reason, self.worker)
        return claim

    def _settle_exit(self, claim: Claim, record: dict[str, Any]) -> Claim | None:
        """The trainer ended but its worker died before writing it down: record it now."""
        run_id = claim.job.run_id
        claim.state.attempts = int(record["attempt"])
        outcome = Outcome.from_exit_record(record, self.queue.kill_reason(run_id))
        decision = decide(outcome, claim.state.failures, self.max_attempts)
        ended = record.get("time")
        self.queue.end_attempt(
            claim,
            decision,
            exit_code=outcome.exit_code,
            stop_reason=outcome.stop_reason,
            ended=ended if isinstance(ended, float) else None,
        )
        self.notes.append(
            f"{run_id}: its trainer had ended (exit code {outcome.exit_code}) after its worker "
            f"died; recorded {decision.status}"
        )
        if decision.status == PAUSED:
            return self._settle_paused(claim)
        return None if decision.status in FINAL else claim

    # -- waiting ----------------------------------------------------------------
    def await_releases(self, run_ids: Iterable[str], wake: Wakeup) -> None:
        """Set `wake` when any of these runs' locks is released, by a finished or dead worker.

        A blocking lock in a thread costs no CPU and needs no file event, which a dead
        process does not produce.
        """
        for run_id in run_ids:
            if run_id not in self._awaited:
                self._awaited.add(run_id)
                threading.Thread(
                    target=self._await_release, args=(run_id, wake), daemon=True
                ).start()

    def _await_release(self, run_id: str, wake: Wakeup) -> None:
        """Until the run's lock is free, and its runner's live lock too (Windows)."""
        paths = self.queue.paths
        try:
            _wait_for_lock(paths.lock_file(run_id))
            if paths.live_file(run_id).exists():
                _wait_for_lock(paths.live_file(run_id))
        except OSError:
            pass
        finally:
            self._awaited.discard(run_id)
            wake.set()


def _wait_for_lock(path: Path) -> None:
    """Block until nobody holds `path`'s lock (a blocking flock; filelock's wait on Windows)."""
    if sys.platform == "win32":
        taken = try_lock(path, timeout=1e9)
        if taken is not None:
            taken[0].release()
        return
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
