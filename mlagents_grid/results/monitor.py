"""The monitor: drops a kill file for each running run that meets one of its `opt_stop` conditions.

With `opt_rungs` its rung half (rung_monitor.py) also pauses runs at their rung and decides
rungs. It reads metrics through one MetricSource: the event files or a TensorBoard server.

It never touches a trainer; kill and pause files are its whole interface with the workers,
and the queue holds all its state, so it can be stopped and restarted at any time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..output import say
from ..plan.conditions import StopCondition
from ..queue.folder import Job, Queue
from ..queue.job import Event
from ..queue.ownership import ClaimFolder, Claims, Hold, Identity
from ..run.watch import FolderWatch
from ..wakeup import Wakeup, catch_stop_signals
from .metric_source import metric_source
from .metrics import MetricsUnavailable, Scalar, tensorboard_run
from .rung_monitor import RungMonitor

DEFAULT_TENSORBOARD = "http://localhost:6006"
DEFAULT_INTERVAL = 15.0
# Event files change in bursts (one write per summary tag); gather a burst into one check.
SETTLE = 0.1
# How often a monitor standing by looks whether the active one is gone.
STANDBY_POLL = 2.0


@dataclass(frozen=True)
class ConditionMet:
    """A run's first opt_stop condition that holds, and what it says."""

    run_id: str
    condition: StopCondition
    reason: str


def conditions_met(
    jobs: list[Job], latest: dict[tuple[str, str], Scalar | None], several_behaviors: bool
) -> list[ConditionMet]:
    """The first holding condition of each run; no data never holds."""
    met = []
    for job in jobs:
        for condition in job.conditions:
            point = latest.get((tensorboard_run(job.run_id, condition.behavior), condition.tag))
            if point is None:
                continue
            reason = condition.holds(point.step, point.value)
            if reason is not None:
                if several_behaviors:
                    reason = f"{condition.behavior}: {reason}"
                met.append(ConditionMet(job.run_id, condition, reason))
                break
    return met


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
        self.metrics = metric_source(tensorboard, logdir)
        self.claims = Claims(Identity.this(), queue.sweep.lease)
        self.identity = f"grid-monitor {self.claims.identity.by}"
        self.signals: list[int] = []
        self.outage: str | None = None
        self._jobs: dict[str, Job] = {}
        self._job_keys: dict[str, tuple[int, int] | None] = {}
        self._jobs_of: object = None
        rungs = queue.sweep.rung_plan
        self.rung_monitor = (
            None
            if rungs is None
            else RungMonitor(queue, rungs, self.metrics, self.claims, self.identity, self._job)
        )
        self.seat: Hold | None = None  # the queue's one monitor seat, while this one acts

    def _job(self, run_id: str, current: bool = False) -> Job:
        """The run's job, read once; `current`: read again if its file was replaced since
        (grid-retry gives a retried run the sweep's opt_stop), at the cost of one stat."""
        key = None
        if current:
            with contextlib.suppress(OSError):
                stat = os.stat(self.queue.paths.job_file(run_id))
                key = (stat.st_ino, stat.st_mtime_ns)
        if run_id not in self._jobs or (current and self._job_keys.get(run_id) != key):
            self._jobs[run_id] = self.queue.job(run_id)
            self._job_keys[run_id] = key
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
            job = self._job(run_id, current=True)
            if job.conditions:
                jobs.append(job)
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
        return self.metrics.latest(wanted)

    def check(self) -> list[ConditionMet]:
        """One pass: read the latest points of watched runs and stop those that qualify; with
        rungs, pause the runs that reached their rung and decide rungs that are complete."""
        running = self.queue.running()
        jobs = self.watched_jobs(running)
        rungs = self.rung_monitor
        heading = rungs.heading(running) if rungs is not None else {}
        pausing = {r: n for r, n in heading.items() if self.queue.pause_rung(r) != n}
        extra = rungs.wanted(pausing) if rungs is not None else {}
        met: list[ConditionMet] = []
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
            met = conditions_met(jobs, latest, len(self.queue.sweep.behaviors) > 1)
            for found in met:
                if self.queue.request_stop(found.run_id, found.reason, self.identity):
                    say(f"{found.run_id}: {found.reason}, stop requested")
            if rungs is not None and pausing:
                stopped = {m.run_id for m in met}
                rungs.pause({r: n for r, n in pausing.items() if r not in stopped}, latest)
        if rungs is not None:
            try:
                rungs.check(deciding=not heading)
            except MetricsUnavailable as exc:
                if self.outage is None:
                    say(f"metrics unavailable ({exc}); no rung is decided until they return")
                self.outage = str(exc)
        return met

    def run(self) -> int:
        """Watch until every run is final (or, --forever, until a stop signal): 0, or 128 +
        the signal's number. A signal is acted on between steps, never inside one, so the
        seat is let go and the watches end however busy the monitor was."""
        say(
            f"monitor watching {self.queue.root} with {self.metrics.description}, "
            f"every {self.interval:g}s"
        )
        wake = Wakeup()
        catch_stop_signals(self._on_signal, wake)

        def woken(_path: str) -> None:
            wake.set()

        try:
            if self.metrics.folder is None:
                return self._loop(wake)
            # Metrics written to a folder: react to each write; the queue: pick up runs as
            # they start.
            queue_folders = [self.queue.paths.state_dir, self.queue.paths.final_dir]
            with (
                FolderWatch(queue_folders, woken, self.polling),
                FolderWatch([self.metrics.folder], woken, self.polling, recursive=True),
            ):
                return self._loop(wake)
        finally:
            if self.seat is not None:
                self.seat.release()
            wake.close()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    def _sit(self, wake: Wakeup) -> bool:
        """Hold the queue's one monitor seat, standing by while another monitor holds it
        (on any host: its lease tells); False when every run became final meanwhile, or a
        stop signal came."""
        if self.seat is not None:
            lost = self.seat.lost
            if lost is None:
                return True
            say(f"this monitor lost its seat ({lost}); standing by")
            self.seat = None
        folder = ClaimFolder(self.queue.paths.monitor_claims, "monitor")
        waiting = False
        while True:
            seat = self.claims.take(folder)
            if seat is not None:
                seat.wrote = True  # it acts on the queue: released, never withdrawn
                seat.keep_alive(True)
                self.seat = seat
                self.queue.record(Event.MONITOR_STARTED, worker=self.identity)
                if waiting:
                    say("the other monitor is gone; this one acts now")
                return True
            if not waiting:
                owner = folder.look().owner
                other = owner.by if owner is not None else "unknown"
                say(f"another monitor is active ({other}); standing by until it stops")
                waiting = True
            if self.signals or (not self.forever and self.queue.all_final()):
                return False
            self._stand_by(wake, min(STANDBY_POLL, self.claims.lease / 4))

    def _stand_by(self, wake: Wakeup, seconds: float) -> None:
        """Sleep that only a stop signal ends early: writes to watched folders, which wake
        an acting monitor, do not make a standing-by one poll faster."""
        until = time.monotonic() + seconds
        while not self.signals and (left := until - time.monotonic()) > 0:
            wake.wait(left)

    def _loop(self, wake: Wakeup) -> int:
        while True:
            if self._sit(wake) and not self.signals:
                self.check()
            if self.signals:
                name = signal.Signals(self.signals[0]).name
                say(f"monitor stopped by {name}")
                return 128 + self.signals[0]
            if self.seat is None or (not self.forever and self.queue.all_final()):
                say("every run is final; monitor exiting")
                return 0
            wake.wait(self.interval)
            if self.metrics.folder is not None and not self.signals:
                time.sleep(SETTLE)
