"""The monitor: drops a kill file for each running run that meets one of its `opt_stop` conditions.

With `opt_rungs` it also drops a pause request for each run that reaches its rung, and once
every run of the rung is paused or final it decides the rung (rungs.decide_rung), writes the
decision to rungs/<n>.json, and only then promotes or stops the paused runs.

It never touches a trainer; kill and pause files are its whole interface with the workers,
and the queue holds all its state, so it can be stopped and restarted at any time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .claims import Claimer
from .conditions import StopCondition
from .errors import GridError
from .job import FINAL, PAUSED, JobState
from .metrics import (
    EventFileSource,
    MetricsUnavailable,
    Scalar,
    TensorBoardSource,
    tensorboard_run,
)
from .output import say
from .queue import Job, Queue, worker_identity
from .rungs import RunAtRung, Rungs, decide_rung, entered, point_score, run_score
from .watch import FolderWatch

DEFAULT_TENSORBOARD = "http://localhost:6006"
DEFAULT_INTERVAL = 15.0
# Event files change in bursts (one write per summary tag); gather a burst into one check.
SETTLE = 0.1


@dataclass(frozen=True)
class Verdict:
    run_id: str
    condition: StopCondition
    reason: str


def judge(
    jobs: list[Job], latest: dict[tuple[str, str], Scalar | None], several_behaviors: bool
) -> list[Verdict]:
    """The first holding condition of each run; no data never holds."""
    verdicts = []
    for job in jobs:
        for condition in job.conditions:
            point = latest.get((tensorboard_run(job.run_id, condition.behavior), condition.tag))
            if point is None:
                continue
            reason = condition.holds(point.step, point.value)
            if reason is not None:
                if several_behaviors:
                    reason = f"{condition.behavior}: {reason}"
                verdicts.append(Verdict(job.run_id, condition, reason))
                break
    return verdicts


class Monitor:
    def __init__(
        self,
        queue: Queue,
        tensorboard: str = DEFAULT_TENSORBOARD,
        logdir: Path | None = None,
        interval: float = DEFAULT_INTERVAL,
        forever: bool = False,
        polling: bool | None = None,
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.forever = forever
        self.polling = polling
        self.logdir = logdir
        self.tensorboard = TensorBoardSource(tensorboard) if logdir is None else None
        self.events = EventFileSource(logdir) if logdir is not None else None
        self.identity = f"grid-monitor {worker_identity()}"
        self.wake = threading.Event()
        self.outage: str | None = None
        self._jobs: dict[str, Job] = {}
        self._jobs_of: object = None
        self.rungs: Rungs | None = queue.sweep.rung_plan
        self.claimer = Claimer(queue, self.identity, max_attempts=1)

    def _job(self, run_id: str) -> Job:
        if run_id not in self._jobs:
            self._jobs[run_id] = self.queue.job(run_id)
        return self._jobs[run_id]

    def _refresh_jobs(self) -> None:
        if self._jobs_of is not self.queue.sweep:
            # --extend may have rewritten the runs' opt_stop conditions: read them again.
            self._jobs.clear()
            self._jobs_of = self.queue.sweep

    def watched_jobs(self, running: list[str] | None = None) -> list[Job]:
        """Running runs with conditions and no kill file yet."""
        asked = self.queue.stop_requested()
        self._refresh_jobs()
        jobs = []
        for run_id in self.queue.running() if running is None else running:
            if run_id in asked:
                continue
            if self._job(run_id).conditions:
                jobs.append(self._job(run_id))
        return jobs

    def latest(
        self, jobs: list[Job], extra: dict[str, list[str]] | None = None
    ) -> dict[tuple[str, str], Scalar | None]:
        """The latest point of each condition's tag, and of `extra` ({tag: TensorBoard runs})."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            for condition in job.conditions:
                wanted[condition.tag].append(tensorboard_run(job.run_id, condition.behavior))
        for tag, runs in (extra or {}).items():
            wanted[tag] += runs
        found: dict[tuple[str, str], Scalar | None] = {}
        if self.events is not None:
            self.events.refresh({run for runs in wanted.values() for run in runs})
            for tag, runs in wanted.items():
                for run in runs:
                    found[(run, tag)] = self.events.latest(run, tag)
            return found
        assert self.tensorboard is not None
        for tag, runs in wanted.items():
            for run, point in self.tensorboard.fetch(sorted(set(runs)), tag).items():
                found[(run, tag)] = point
        return found

    def check(self) -> list[Verdict]:
        """One pass: read the latest points of watched runs and stop those that qualify; with
        rungs, pause the runs that reached their rung and decide rungs that are complete."""
        running = self.queue.running()
        jobs = self.watched_jobs(running)
        heading = self._heading(running) if self.rungs is not None else {}
        pausing = {r: n for r, n in heading.items() if self.queue.pause_rung(r) != n}
        extra: dict[str, list[str]] = {}
        if self.rungs is not None and pausing:
            folders = self.queue.sweep.behavior_folders
            extra[self.rungs.tag] = [tensorboard_run(r, b) for r in pausing for b in folders]
        verdicts: list[Verdict] = []
        if jobs or extra:
            try:
                latest = self.latest(jobs, extra)
            except MetricsUnavailable as exc:
                if self.outage is None:
                    say(f"metrics unavailable ({exc}); no run is stopped until they return")
                self.outage = str(exc)
                return []
            if self.outage is not None:
                say("metrics available again")
                self.outage = None
            verdicts = judge(jobs, latest, len(self.queue.sweep.behaviors) > 1)
            for verdict in verdicts:
                if self.queue.request_stop(verdict.run_id, verdict.reason, self.identity):
                    say(f"{verdict.run_id}: {verdict.reason}, stop requested")
            if pausing:
                stopped = {v.run_id for v in verdicts}
                self._pause({r: n for r, n in pausing.items() if r not in stopped}, latest)
        if self.rungs is not None:
            try:
                self.check_rungs(deciding=not heading)
            except MetricsUnavailable as exc:
                if self.outage is None:
                    say(f"metrics unavailable ({exc}); no rung is decided until they return")
                self.outage = str(exc)
        return verdicts

    # -- rungs ------------------------------------------------------------------
    def _heading(self, running: list[str]) -> dict[str, int]:
        """Running runs that still have a rung ahead: the rung (1-based) each trains towards."""
        assert self.rungs is not None
        asked = self.queue.stop_requested()
        heading = {}
        for run_id in running:
            if run_id in asked:
                continue
            try:
                state = self.queue.read_state(run_id)
            except GridError:
                continue
            if state.rung < len(self.rungs.steps):
                heading[run_id] = state.rung + 1
        return heading

    def _pause(self, pausing: dict[str, int], latest: dict[tuple[str, str], Scalar | None]) -> None:
        """Ask for a pause of each run whose every behavior reached its rung's step."""
        assert self.rungs is not None
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
        states = {}
        for run_id in set(self.queue.active_ids()) | set(self.queue.final_ids()):
            try:
                states[run_id] = self.queue.read_state(run_id)
            except GridError:
                continue
        return states

    def check_rungs(self, deciding: bool = True) -> None:
        """Carry out decided rungs where runs still wait, and decide the next complete rung
        (only when `deciding`: no running run is still on its way to a rung).

        A decision is written durably before any run is promoted or stopped by it, and a rung
        with a decision is never decided again: a monitor killed at any point and restarted
        completes what is missing and reaches the same decisions.

        Every pass settles each run paused at a rung already decided: one the decision
        names, or one that paused there without taking part (added by --extend or retried
        after the rung was decided); the claimer promotes it (`rungs.passes`) or stops it
        with its point's verdict.
        """
        assert self.rungs is not None
        states = self._states()
        numbers = self.queue.decided_rungs()
        for run_id, state in sorted(states.items()):
            if state.status == PAUSED and state.rung + 1 in numbers:
                self.claimer.settle(run_id)
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
        self._refresh_jobs()
        runs = [
            RunAtRung(
                run_id,
                self._job(run_id).point,
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

    def decide(self, number: int, entered: list[str], states: dict[str, JobState]) -> None:
        assert self.rungs is not None
        step = self.rungs.steps[number - 1]
        series = self.series(entered)
        points: dict[int, list[str]] = defaultdict(list)
        for run_id in entered:
            points[self._job(run_id).point].append(run_id)
        scores = {
            point: point_score([run_score(series[r], step, self.rungs.window) for r in runs])
            for point, runs in points.items()
        }
        eligible = {
            point for point, runs in points.items() if any(states[r].status == PAUSED for r in runs)
        }
        decision = decide_rung(number, step, self.rungs.keep, scores, points, eligible)
        self.queue.write_rung_decision(decision, self.identity)
        promoted = ", ".join(r for v in decision.verdicts if v.promoted for r in v.runs)
        say(
            f"rung {number} (step {step}) decided: {len(decision.promoted)} of {len(points)} "
            f"points promoted ({promoted}), cut {decision.cut}"
        )
        for run_id in entered:
            if states[run_id].status == PAUSED:
                self.claimer.settle(run_id)

    def series(self, run_ids: list[str]) -> dict[str, dict[str, list[Scalar]]]:
        """Each run's whole series of the rung tag, per behavior folder."""
        assert self.rungs is not None
        folders = self.queue.sweep.behavior_folders
        names = {(r, b): tensorboard_run(r, b) for r in run_ids for b in folders}
        found: dict[str, dict[str, list[Scalar]]] = {r: {} for r in run_ids}
        if self.events is not None:
            self.events.refresh(names.values())
            for (run_id, behavior), name in names.items():
                found[run_id][behavior] = self.events.series(name, self.rungs.tag)
            return found
        assert self.tensorboard is not None
        rows = self.tensorboard.fetch_series(sorted(names.values()), self.rungs.tag)
        for (run_id, behavior), name in names.items():
            found[run_id][behavior] = rows.get(name, [])
        return found

    def run(self) -> int:
        source = f"event files under {self.logdir}" if self.logdir else "TensorBoard"
        if self.tensorboard is not None:
            source = f"TensorBoard at {self.tensorboard.url}"
        say(f"monitor watching {self.queue.root} with {source}, every {self.interval:g}s")
        if self.logdir is None:
            return self._loop()
        # Event files: react to each write; the queue: pick up runs as they start.
        queue_folders = [self.queue.paths.state_dir, self.queue.paths.final_dir]
        with (
            FolderWatch(queue_folders, self._wake, self.polling),
            FolderWatch([self.logdir], self._wake, self.polling, recursive=True),
        ):
            return self._loop()

    def _wake(self, _path: str) -> None:
        self.wake.set()

    def _loop(self) -> int:
        while True:
            self.check()
            if not self.forever and self.queue.all_final():
                say("every run is final; monitor exiting")
                return 0
            if self.events is not None:
                self.wake.wait(self.interval)
                time.sleep(SETTLE)
            else:
                time.sleep(self.interval)
            self.wake.clear()
