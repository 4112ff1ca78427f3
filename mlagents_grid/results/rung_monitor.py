"""The monitor's rung half (`opt_rungs`): pause each run that reaches its rung, decide a rung
once every run of it is paused or final, and carry out decided rungs.

A decision is written durably (rungs/<n>.json) before any run is promoted or stopped by it,
and a rung with a decision is never decided again: a monitor killed at any point and
restarted completes what is missing and reaches the same decisions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from ..output import say
from ..plan.rungs import Rungs
from ..queue.claims import Claimer
from ..queue.folder import Job, Queue
from ..queue.job import DONE, FINAL, PAUSED, Event, JobState
from ..queue.ownership import Claims
from .metric_source import MetricSource
from .metrics import Scalar, tensorboard_run
from .rung_ranking import RunAtRung, decide_rung, entered, point_score, run_score


class RungMonitor:
    def __init__(
        self,
        queue: Queue,
        rungs: Rungs,
        metrics: MetricSource,
        claims: Claims,
        identity: str,
        job: Callable[[str], Job],
    ) -> None:
        """`job`: a run's job, as the monitor keeps them (read once)."""
        self.queue = queue
        self.rungs = rungs
        self.metrics = metrics
        self.identity = identity
        self.job = job
        self.claimer = Claimer(queue, claims)
        self._announced: set[int] = set()  # rungs whose rung-decided event was seen

    def heading(self, running: list[str]) -> dict[str, int]:
        """Running runs that still have a rung ahead: the rung (1-based) each trains towards."""
        asked = self.queue.stop_requested()
        states = self._states()
        heading = {}
        for run_id in running:
            state = states.get(run_id)
            if run_id in asked or state is None:
                continue
            if state.rung < len(self.rungs.steps):
                heading[run_id] = state.rung + 1
        return heading

    def wanted(self, pausing: dict[str, int]) -> dict[str, list[str]]:
        """The TensorBoard runs whose latest rung-tag point tells whether to pause them."""
        if not pausing:
            return {}
        folders = self.queue.sweep.behavior_folders
        return {self.rungs.tag: [tensorboard_run(r, b) for r in pausing for b in folders]}

    def pause(self, pausing: dict[str, int], latest: dict[tuple[str, str], Scalar | None]) -> None:
        """Ask for a pause of each run whose every behavior reached its rung's step."""
        folders = self.queue.sweep.behavior_folders
        for run_id, number in pausing.items():
            points = [latest.get((tensorboard_run(run_id, b), self.rungs.tag)) for b in folders]
            steps = [p.step for p in points if p is not None]
            if len(steps) < len(points) or min(steps) < self.rungs.steps[number - 1]:
                continue
            if self.queue.request_pause(run_id, number, min(steps), self.identity):
                say(f"{run_id}: reached rung {number} (step {min(steps)}), pause requested")

    def _states(self) -> dict[str, JobState]:
        """Every started run's recorded state (unreadable ones left out)."""
        found = self.queue.states(self.queue.snapshot())
        return {r: s for r, s in found.items() if isinstance(s, JobState)}

    def check(self, deciding: bool = True) -> None:
        """Carry out decided rungs where runs still wait, and decide the next complete rung
        (only when `deciding`: no running run is still on its way to a rung).

        Every pass hands the claimer each run paused at a rung already decided: one the
        decision names, or one that paused there without taking part (added by --extend or
        retried after the rung was decided); the claimer promotes it (`passes`) or stops it
        with its point's reason.
        """
        states = self._states()
        numbers = self.queue.decided_rungs()
        self._announce(numbers)
        for run_id, state in sorted(states.items()):
            if state.status == PAUSED and state.rung + 1 in numbers:
                self.claimer.carry_out_waiting(run_id)
        if not deciding:
            return
        number = 1
        while number in numbers:
            number += 1
        if number > len(self.rungs.steps):
            return
        decided = self.queue.rung_decisions()
        if number > 1 and number - 1 not in decided:
            return  # its file is unreadable: nothing is decided past it
        run_ids = self.queue.sweep.run_ids
        if len(states) < len(run_ids) and number == 1:
            return  # a run has not started yet
        runs = [
            RunAtRung(
                run_id,
                self.job(run_id).point,
                states[run_id].rung if run_id in states else 0,
                run_id in states and states[run_id].status in FINAL,
            )
            for run_id in run_ids
        ]
        taking_part = entered(number, decided, runs)
        ready = all(
            r in states
            and (
                states[r].status in FINAL
                or (states[r].status == PAUSED and states[r].rung + 1 == number)
            )
            for r in taking_part
        )
        if not ready or not taking_part:
            return
        self.decide(number, taking_part, states)

    def _announce(self, numbers: set[int]) -> None:
        """Write the `rung-decided` event of a decision that lacks it (a monitor killed right
        after the decision became durable); events.jsonl is read only when a rung is new."""
        if numbers <= self._announced:
            return
        self._announced = {
            int(e["rung"])
            for e in self.queue.events()
            if e.get("event") == Event.RUNG_DECIDED and isinstance(e.get("rung"), int)
        }
        for number in sorted(numbers - self._announced):
            decision = self.queue.rung_decision(number)
            if decision is not None:
                self.queue.announce_rung(decision, self.identity, recovered=True)
                self._announced.add(number)
                say(f"rung {number}: its decision had no rung-decided event; written now")

    def decide(self, number: int, entered: list[str], states: dict[str, JobState]) -> None:
        """Score the points that entered rung `number`, write the decision, carry it out."""
        step = self.rungs.steps[number - 1]
        series = self.series(entered)
        points: dict[int, list[str]] = defaultdict(list)
        for run_id in entered:
            points[self.job(run_id).point].append(run_id)
        scores = {
            point: point_score([run_score(series[r], step, self.rungs.window) for r in runs])
            for point, runs in points.items()
        }
        eligible = {
            point for point, runs in points.items() if any(states[r].status == PAUSED for r in runs)
        }
        done = {p for p, runs in points.items() if all(states[r].status == DONE for r in runs)}
        previous = self.queue.rung_decision(number - 1)
        decision = decide_rung(
            number, step, self.rungs.keep, scores, points, eligible, previous, done
        )
        self.queue.write_rung_decision(decision, self.identity)
        self._announced.add(number)
        say(f"rung {number} (step {step}) decided: {decision.summary()}")
        for run_id in entered:
            if states[run_id].status == PAUSED:
                self.claimer.carry_out_waiting(run_id)

    def series(self, run_ids: list[str]) -> dict[str, dict[str, list[Scalar]]]:
        """Each run's whole series of the rung tag, per behavior folder."""
        folders = self.queue.sweep.behavior_folders
        names = {(r, b): tensorboard_run(r, b) for r in run_ids for b in folders}
        rows = self.metrics.series(set(names.values()), self.rungs.tag)
        found: dict[str, dict[str, list[Scalar]]] = {r: {} for r in run_ids}
        for (run_id, behavior), name in names.items():
            found[run_id][behavior] = rows.get(name, [])
        return found
