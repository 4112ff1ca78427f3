"""How a worker finds and claims its next run. Owned by one worker (or one grid-stop, one
monitor).

A claim reads the run once (`Queue.read_view`), decides purely what to do with it
(`transitions.claim_steps`), and has the ledger write that; only then does the run train.
Claiming also carries out what others left behind: a stop request for a run nobody trains,
the recorded end of a trainer whose worker died before writing it down, state files a crash
left unreadable, and rung decisions for paused runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import GridError
from ..wakeup import Wakeup
from .files import FileBusy
from .folder import Claim, Queue, StateRef
from .job import FINAL, INTERRUPTED, PAUSED, RUNNING, Event, JobState, Status
from .ownership import Claims, Hold, Liveness, Process, wait_for_exits
from .transitions import claim_steps

# Runs whose worker may have died: tried before fresh ones.
TAKEN_OVER = (RUNNING, INTERRUPTED)


def claim_order(statuses: dict[str, Status | None], order: dict[str, int]) -> list[str]:
    """Started runs to try first: interrupted ones, then retries and promoted runs (pending
    again), each in run order. Paused runs are left out: they wait for their rung."""
    statuses = {r: s for r, s in statuses.items() if s != PAUSED}
    ranked = sorted(statuses, key=lambda run_id: order.get(run_id, len(order)))
    first = [r for r in ranked if statuses[r] in TAKEN_OVER]
    return first + [r for r in ranked if statuses[r] not in TAKEN_OVER]


class Claimer:
    """Claims for one process; keeps a cursor so a claim costs a few file checks.

    Fresh runs come from a cursor over the run order that passes runs found started or
    taken; once it is through, a full pass finds any run passed while another held it.
    """

    def __init__(self, queue: Queue, claims: Claims) -> None:
        self.queue = queue
        self.claims = claims
        # Runs that cannot be claimed (a broken job file), each with its one-line reason.
        self.problems: dict[str, str] = {}
        # What claiming carried out or repaired, for the worker to tell (drained by it).
        self.notes: list[str] = []
        # Runs skipped in the last pass because a file of theirs could not be read for now
        # (Windows: held open by another process); tried again in the next pass.
        self.busy: set[str] = set()
        self._index: dict[str, int] | None = None
        self._indexed: object = None
        self._cursor = 0
        self._awaited: set[str] = set()
        # Runs whose lock another process held during the last claim (a worker, grid-monitor
        # carrying out a rung's decision, an orphaned launcher recording an exit): their release
        # is awaited.
        self.held: set[str] = set()

    @property
    def by(self) -> str:
        return self.claims.identity.by

    def _order(self) -> dict[str, int]:
        # A sweep grown by --extend is a new Sweep object with more run ids: index it again.
        # Run ids are only ever appended, so the cursor stays where it is.
        sweep = self.queue.sweep
        if self._index is None or self._indexed is not sweep:
            self._index = {run_id: i for i, run_id in enumerate(sweep.run_ids)}
            self._indexed = sweep
        return self._index

    def next(self) -> Claim | None:
        """Claim the next claimable run: interrupted ones first, then retries, then pending."""
        self.busy.clear()
        self.held.clear()
        started = self.queue.listing(final=False)
        states = {
            r: s if isinstance(s, JobState) else None for r, s in self.queue.states(started).items()
        }
        statuses: dict[str, Status | None] = {
            r: None if states.get(r) is None else states[r].status  # type: ignore[union-attr]
            for r in started
        }
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
        paused_decided = sorted(r for r, s in statuses.items() if s == PAUSED and r not in waiting)
        for run_id in claim_order(statuses, self._order()) + paused_decided:
            claim = self._try(run_id)
            if claim is not None:
                return claim
        run_ids = self.queue.sweep.run_ids
        while self._cursor < len(run_ids):
            run_id = run_ids[self._cursor]
            self._cursor += 1
            if run_id in started or self._claimed_before(run_id):
                continue  # tried above; or final, or being claimed: the full pass comes back
            claim = self._try(run_id)
            if claim is not None:
                return claim
        final = set(self.queue.listing(final=True))
        for run_id in run_ids:
            if run_id not in final and run_id not in waiting:
                claim = self._try(run_id)
                if claim is not None:
                    return claim
        return None

    def _claimed_before(self, run_id: str) -> bool:
        """Whether a claim of the run exists and its final state, if it has one, is whole:
        an unreadable final file is never proof, and the run is tried (and retried)."""
        generations = self.queue.claim_folder(run_id).generations()
        if not generations:
            return False
        try:
            self.queue.read_state(StateRef(run_id, generations[-1], final=True))
        except FileNotFoundError:
            return True  # not final: being claimed, or left running (the full pass sees it)
        except GridError:
            return False
        return True

    def carry_out_waiting(self, run_id: str) -> None:
        """Carry out what waits for a run nobody trains (a stop request, a rung's decision):
        claim it for that alone, and let it go."""
        claim = self._try(run_id)
        if claim is not None:
            claim.release()

    def _try(self, run_id: str) -> Claim | None:
        if run_id in self.problems:
            return None
        hold = self.claims.take(self.queue.claim_folder(run_id))
        if hold is None:
            self.held.add(run_id)
            return None
        try:
            return self._carry_out(hold)
        except FileBusy as exc:
            hold.release()
            if run_id not in self.busy:
                self.notes.append(f"{run_id} skipped for now: {exc}")
            self.busy.add(run_id)
            return None
        except GridError as exc:
            hold.release()
            self.problems[run_id] = str(exc)
            return None
        except BaseException:
            hold.release()
            raise

    def _carry_out(self, hold: Hold) -> Claim | None:
        """Read the held run, decide, write; the claim when the run is to train now."""
        run_id = hold.folder.name
        view, seen = self.queue.read_view(hold)
        steps = claim_steps(view, self.queue.sweep.max_attempts, self.by)
        if hold.taken_over is not None:
            before = hold.taken_over
            why = "its processes are gone" if before.host == hold.owner.host else "its lease lapsed"
            self.queue.record(
                Event.TAKEN_OVER,
                run_id,
                worker=self.by,
                gen=hold.generation,
                previous=before.by,
                reason=why,
            )
            if view.state.status not in FINAL:
                self.notes.append(f"{run_id}: taken over from {before.by} ({why})")
        if not self.queue.ledger.apply(hold, steps, seen):
            hold.release()
            return None
        for unreadable in steps.unreadable:
            kept = f"{Path(unreadable.path).name}.unreadable"
            self.notes.append(
                f"{run_id}: {unreadable.path} was unreadable; kept as {kept}, retrying"
            )
        self.notes += [f"{run_id}: {note}" for note in steps.notes]
        if not steps.train:
            hold.release()
            return None
        stale = [] if hold.wrote else seen
        return Claim(view.job, steps.state or view.state, hold, stale)

    # -- waiting ----------------------------------------------------------------
    def await_releases(self, run_ids: Iterable[str], wake: Wakeup) -> float | None:
        """Set `wake` when a run of this host held by a process that then ends; for runs
        held from other hosts, return how soon to look again (their lease is judged by
        watching it over time)."""
        again: float | None = None
        for run_id in run_ids:
            seen, liveness = self.claims.look(self.queue.claim_folder(run_id))
            owner = seen.owner
            if liveness != Liveness.HELD or owner is None:
                continue
            if owner.host != self.claims.identity.host.name:
                quarter = max(self.claims.lease, owner.lease) / 4
                again = quarter if again is None else min(again, quarter)
                continue
            if run_id in self._awaited:
                continue
            beat = seen.beat
            keepers = [p for p in (owner.claimer, owner.launcher) if p is not None]
            if beat is not None and beat.trainer is not None:
                keepers.append(beat.trainer)
            self._awaited.add(run_id)
            threading.Thread(
                target=self._await_exits, args=(run_id, keepers, wake), daemon=True
            ).start()
        return again

    def _await_exits(self, run_id: str, keepers: list[Process], wake: Wakeup) -> None:
        try:
            wait_for_exits(keepers)
        finally:
            self._awaited.discard(run_id)
            wake.set()
