"""Who owns a thing of the queue (a run, the plan, the monitor's seat, a port slot), and for
how long: owner records, leases and fencing. The only locking code of the package.

A claim is a file created atomically (link, or O_EXCL where links are refused) in the thing's
claim folder: `claims/<run>/g<N>.json`. N, the generation, grows with every claim, and the
record of the highest generation names the owner. No file lock is used anywhere: what
`flock` does on a shared filesystem (local to each host, ignored, absent) cannot be checked
from the client, while atomic rename and O_EXCL create hold on every filesystem a queue may
live on (NFSv3+, Lustre, GPFS, BeeGFS, CephFS, SMB).

Whether an owner lives:
- on its own host (same name, same boot), its processes decide at once: the claimer, its
  trainer launcher and the trainer itself, each a pid with its start time;
- from another host, its lease: while it holds the claim the owner rewrites `g<N>.beat`,
  and a peer may take over only after it has seen the record and the beat unchanged for the
  whole lease period on its own clock. Clocks of different hosts are never compared, and the
  content is what is compared (read after open), never a cached mtime.

Fencing: a holder writes the run's state under its generation (`state/<run>.g<N>.json`) and
readers take the highest, so a holder that lost its claim without knowing can never overwrite
the new holder's state. A holder that finds a newer generation, or that has not renewed its
lease for half the period, stops everything it runs at once (see `Renewal`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from . import files
from .files import write_atomic

# A renewal every sixth of the lease: three chances before the owner gives up at half.
RENEWALS_PER_LEASE = 6
# Two processes started within this many seconds with the same pid are the same process.
START_TOLERANCE = 0.05
RECORD_SUFFIX = ".json"
BEAT_SUFFIX = ".beat"


def lease_clock() -> float:
    """Seconds on a clock that counts a suspended machine's sleep (Linux) and never jumps."""
    if sys.platform.startswith("linux"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


def host_name() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def _boot_id() -> str:
    """This boot of this machine: Linux's random boot id, else the boot time to the second."""
    with contextlib.suppress(OSError):
        text = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        if text:
            return text
    return f"boot-{psutil.boot_time():.0f}"


@dataclass(frozen=True)
class Host:
    name: str
    boot: str

    @classmethod
    @functools.cache
    def this(cls) -> Host:
        """This machine, read once per process (its name and boot do not change under it)."""
        return cls(host_name(), _boot_id())

    def rebooted_since(self, boot: str) -> bool:
        """Whether `boot`, seen on this host's name, is a boot that has ended for sure.

        Only Linux boot ids say so; a boot time read elsewhere can move by a second.
        """
        return boot != self.boot and not boot.startswith("boot-") and "-" in self.boot


@dataclass(frozen=True)
class Process:
    """A process as a record names it: the pid, and its start time (pids are reused)."""

    pid: int
    start: float

    @classmethod
    def of(cls, pid: int) -> Process | None:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.start) < START_TOLERANCE
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def to_list(self) -> list[float]:
        return [self.pid, self.start]

    @classmethod
    def from_list(cls, value: Any) -> Process | None:
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int)
            and isinstance(value[1], int | float)
        ):
            return cls(value[0], float(value[1]))
        return None


@dataclass(frozen=True)
class Owner:
    """A claim's record: who holds it, where, for how long, and since which generation.

    Written once when the claim is made, and once more when it is released.
    """

    name: str  # what is claimed: a run id, "plan", "monitor", a port slot
    generation: int
    token: str
    host: str
    boot: str
    claimer: Process
    launcher: Process | None
    lease: float
    by: str  # host:pid, as events and grid-status name workers
    time: float  # wall clock when claimed (shown, never compared between hosts)
    slurm: str | None = None
    released: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "generation": self.generation,
                "token": self.token,
                "host": self.host,
                "boot": self.boot,
                "claimer": self.claimer.to_list(),
                "launcher": None if self.launcher is None else self.launcher.to_list(),
                "lease": self.lease,
                "by": self.by,
                "time": self.time,
                "slurm": self.slurm,
                "released": self.released,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Owner | None:
        """The record, or None when it is cut off or not one (a crash while it was written)."""
        try:
            data = json.loads(text)
            claimer = Process.from_list(data["claimer"])
            if claimer is None:
                return None
            return cls(
                name=str(data["name"]),
                generation=int(data["generation"]),
                token=str(data["token"]),
                host=str(data["host"]),
                boot=str(data["boot"]),
                claimer=claimer,
                launcher=Process.from_list(data.get("launcher")),
                lease=float(data["lease"]),
                by=str(data["by"]),
                time=float(data["time"]),
                slurm=data.get("slurm"),
                released=bool(data.get("released", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Beat:
    """One renewal of a lease: who renewed it, when (wall clock, shown only), and the trainer
    its launcher runs, which keeps the claim alive on its host too. `ended`: the launcher's
    last beat, once the trainer's end is recorded; the launcher keeps the claim no more."""

    count: int
    by: int
    time: float
    trainer: Process | None = None
    ended: bool = False

    def to_json(self) -> str:
        trainer = None if self.trainer is None else self.trainer.to_list()
        return json.dumps(
            {
                "count": self.count,
                "by": self.by,
                "time": self.time,
                "trainer": trainer,
                "ended": self.ended,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Beat | None:
        try:
            data = json.loads(text)
            return cls(
                int(data["count"]),
                int(data["by"]),
                float(data["time"]),
                Process.from_list(data.get("trainer")),
                bool(data.get("ended", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None


class Liveness(str, Enum):
    FREE = "free"  # never claimed, or released by its owner
    HELD = "held"  # its owner lives, or may live (a lease not yet seen to lapse)
    DEAD = "dead"  # its owner's processes are gone (decided on the owner's own host)
    EXPIRED = "expired"  # its lease was seen unchanged for a whole lease period


@dataclass(frozen=True)
class Seen:
    """A claim folder as read once: the highest generation, its record and beat as text."""

    generation: int
    record_text: str | None = None
    beat_text: str | None = None

    @property
    def owner(self) -> Owner | None:
        return None if self.record_text is None else Owner.from_json(self.record_text)

    @property
    def beat(self) -> Beat | None:
        return None if self.beat_text is None else Beat.from_json(self.beat_text)

    @property
    def content(self) -> tuple[int, str | None, str | None]:
        """What a peer compares over a lease period: any change proves the owner alive."""
        return self.generation, self.record_text, self.beat_text


def judge(
    seen: Seen,
    here: Host,
    alive: Callable[[Process], bool],
    unchanged_for: float,
    lease: float,
) -> Liveness:
    """Whether the claim `seen` is free, held, or its owner gone; `unchanged_for` is how long
    this observer has seen the same content on its own clock, `lease` the sweep's lease."""
    if seen.generation == 0:
        return Liveness.FREE
    owner = seen.owner
    if owner is None:
        # Being written, or cut off by a crash: its owner cannot be told, only outlived.
        return Liveness.EXPIRED if unchanged_for >= lease else Liveness.HELD
    if owner.released:
        return Liveness.FREE
    if owner.host == here.name and owner.boot == here.boot:
        beat = seen.beat
        launcher = None if beat is not None and beat.ended else owner.launcher
        keepers = [owner.claimer, launcher, beat.trainer if beat is not None else None]
        return Liveness.HELD if any(p is not None and alive(p) for p in keepers) else Liveness.DEAD
    if owner.host == here.name and here.rebooted_since(owner.boot):
        return Liveness.DEAD
    return Liveness.EXPIRED if unchanged_for >= max(lease, owner.lease) else Liveness.HELD


@dataclass(frozen=True)
class OwnerView:
    """A claim as grid-status shows it: who holds it, when its lease was last renewed (the
    renewer's wall clock: shown, never used to take anything over), and whether it lives."""

    by: str | None
    slurm: str | None
    renewed: float | None
    lease: float
    liveness: Liveness


def view_owner(
    seen: Seen, here: Host, alive: Callable[[Process], bool], now: float, lease: float
) -> OwnerView:
    """One look at a claim, for people: on its own host its processes decide; from elsewhere
    the lease counts as lapsed once the renewer's clock says it is older than the lease."""
    owner = seen.owner
    if owner is None:
        return OwnerView(None, None, None, lease, judge(seen, here, alive, 0.0, lease))
    beat = seen.beat
    renewed = beat.time if beat is not None else owner.time
    liveness = judge(seen, here, alive, 0.0, lease)
    if liveness == Liveness.HELD and owner.host != here.name and now - renewed > lease:
        liveness = Liveness.EXPIRED
    return OwnerView(owner.by, owner.slurm, renewed, max(lease, owner.lease), liveness)


class Observer:
    """How long this process has seen each claim's content unchanged, on its own clock."""

    def __init__(self, clock: Callable[[], float] = lease_clock) -> None:
        self.clock = clock
        self._seen: dict[str, tuple[tuple[int, str | None, str | None], float]] = {}

    def unchanged_for(self, key: str, seen: Seen) -> float:
        now = self.clock()
        before = self._seen.get(key)
        if before is None or before[0] != seen.content:
            self._seen[key] = (seen.content, now)
            return 0.0
        return now - before[1]

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)


def _generation_of(name: str, suffix: str) -> int | None:
    if name.startswith("g") and name.endswith(suffix):
        digits = name[1 : len(name) - len(suffix)]
        if digits.isdigit():
            return int(digits)
    return None


def _read_text(path: Path) -> str | None:
    try:
        return files.read_text(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""  # unreadable: judged like a record being written


@dataclass
class ClaimFolder:
    """The claim folder of one thing: its records by generation, and their beats."""

    path: Path
    name: str

    def record(self, generation: int) -> Path:
        return self.path / f"g{generation}{RECORD_SUFFIX}"

    def beat_file(self, generation: int) -> Path:
        return self.path / f"g{generation}{BEAT_SUFFIX}"

    def generations(self) -> list[int]:
        try:
            entries = os.listdir(self.path)
        except FileNotFoundError:
            return []
        found = (_generation_of(entry, RECORD_SUFFIX) for entry in entries)
        return sorted(g for g in found if g is not None)

    def look(self) -> Seen:
        """The highest generation's record and beat, read after open (never a cached stat)."""
        for _ in range(3):
            generations = self.generations()
            if not generations:
                return Seen(0)
            top = generations[-1]
            text = _read_text(self.record(top))
            if text is not None:
                return Seen(top, text or None, _read_text(self.beat_file(top)) or None)
            # Withdrawn between the listing and the read: look again.
        return Seen(0)

    def create(self, owner: Owner) -> bool:
        """Create `owner`'s record, atomically and only if its generation is new."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.record(owner.generation)
        text = owner.to_json()
        tmp = self.path / f".{target.name}.{os.getpid()}.{owner.token[:8]}.tmp"
        tmp.write_text(text, encoding="utf-8")
        try:
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            except (OSError, AttributeError, NotImplementedError):
                return _create_exclusive(target, text)
        finally:
            with contextlib.suppress(OSError):
                files.unlink(tmp)

    def rewrite(self, owner: Owner) -> None:
        write_atomic(self.record(owner.generation), owner.to_json(), durable=False)

    def write_beat(self, generation: int, beat: Beat) -> None:
        write_atomic(self.beat_file(generation), beat.to_json(), durable=False)

    def remove(self, generation: int) -> None:
        for path in (self.beat_file(generation), self.record(generation)):
            with contextlib.suppress(FileNotFoundError):
                files.unlink(path)

    def prune(self, below: int) -> None:
        """Drop records older than `below`: the newest ones are all a claim is judged by."""
        for generation in self.generations():
            if generation < below:
                with contextlib.suppress(OSError):
                    self.remove(generation)


def _create_exclusive(target: Path, text: str) -> bool:
    """O_EXCL create, for filesystems that refuse hard links (some SMB and FUSE mounts).

    A peer may read the record empty for an instant; an empty record is judged as held.
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0))
    except FileExistsError:
        return False
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return True


@dataclass
class Identity:
    """What this process writes into every claim it makes."""

    host: Host
    claimer: Process
    launcher: Process | None = None
    slurm: str | None = None

    @classmethod
    def this(cls, launcher_pid: int | None = None, slurm: str | None = None) -> Identity:
        claimer = Process.of(os.getpid())
        assert claimer is not None
        launcher = Process.of(launcher_pid) if launcher_pid else None
        return cls(Host.this(), claimer, launcher, slurm)

    @property
    def by(self) -> str:
        return f"{self.host.name}:{self.claimer.pid}"


@dataclass
class Hold:
    """A claim this process made, until it releases or withdraws it."""

    folder: ClaimFolder
    owner: Owner
    taken_over: Owner | None = None  # the owner whose lapsed claim this one replaced
    wrote: bool = False  # something was written under this generation: release, never withdraw
    done: bool = False

    @property
    def generation(self) -> int:
        return self.owner.generation

    @property
    def previous(self) -> int:
        """The generation this claim followed: its state is at that generation or below."""
        return self.owner.generation - 1

    def fenced(self) -> bool:
        """Whether a newer claim exists: this one was taken over and must write nothing."""
        return self.folder.record(self.generation + 1).exists()

    def renew(self, count: int, trainer: Process | None = None, ended: bool = False) -> None:
        beat = Beat(count, os.getpid(), time.time(), trainer, ended)
        self.folder.write_beat(self.generation, beat)

    def keep_alive(self, on: bool) -> None:
        """Renew from this process (on), or leave it to another renewer (off)."""
        if on and not self.done:
            RENEWER.keep(self)
        else:
            RENEWER.drop(self)

    @property
    def lost(self) -> str | None:
        """Why this process's own renewal gave the claim up (None while it holds)."""
        return RENEWER.lost(self)

    def release(self) -> None:
        """Let go: free at once for every peer, and never again this generation's owner."""
        if self.done:
            return
        self.keep_alive(False)
        self.done = True
        if not self.wrote:
            # Nothing was written under this generation: no stale writer can exist, so the
            # number may be used again, and claim folders keep only claims that did work.
            self.folder.remove(self.generation)
            return
        with contextlib.suppress(OSError):
            if not self.fenced():
                self.folder.rewrite(replace(self.owner, released=True))


class Renewal:
    """The lease kept by whoever renews it: a schedule, the fence check, and the rule that an
    owner who could not renew for half the lease (frozen, cut off from the filesystem) must
    stop at once, since a peer may take over after a whole lease.

    `tick` returns None while the lease holds, else why it is lost.
    """

    def __init__(
        self,
        hold: Hold,
        trainer: Process | None = None,
        clock: Callable[[], float] = lease_clock,
    ) -> None:
        self.hold = hold
        self.trainer = trainer
        self.clock = clock
        self.interval = max(0.05, hold.owner.lease / RENEWALS_PER_LEASE)
        self.renewed_at = clock()
        self.count = 0
        self.lost: str | None = None

    def due(self) -> float:
        return self.renewed_at + self.interval

    def tick(self) -> str | None:
        if self.lost is not None:
            return self.lost
        now = self.clock()
        if now - self.renewed_at >= self.hold.owner.lease / 2:
            self.lost = f"its lease was not renewed for {now - self.renewed_at:.0f}s"
            return self.lost
        try:
            if self.hold.fenced():
                self.lost = "another worker took the run over"
                return self.lost
            self.count += 1
            self.hold.renew(self.count, self.trainer)
            self.renewed_at = self.clock()
        except OSError:
            pass  # tried again at the next tick; given up at half the lease
        return None

    def end(self) -> None:
        """The trainer's end is recorded: this renewer keeps the claim no longer."""
        with contextlib.suppress(OSError):
            if not self.hold.fenced():
                self.hold.renew(self.count + 1, ended=True)


class Renewer:
    """One thread per process that renews the holds this process keeps alive itself (a
    worker between its trainers, the plan's and the monitor's seat): a thread per claim
    would cost more than the claim."""

    def __init__(self) -> None:
        self._renewals: dict[int, Renewal] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, hold: Hold) -> None:
        with self._lock:
            self._renewals[id(hold)] = Renewal(hold)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
                self._thread.start()
        self._changed.set()

    def drop(self, hold: Hold) -> None:
        with self._lock:
            self._renewals.pop(id(hold), None)

    def lost(self, hold: Hold) -> str | None:
        with self._lock:
            renewal = self._renewals.get(id(hold))
        return None if renewal is None else renewal.lost

    def _run(self) -> None:
        while True:
            with self._lock:
                renewals = list(self._renewals.values())
            due = min((r.due() for r in renewals if r.lost is None), default=None)
            timeout = None if due is None else max(0.0, due - lease_clock())
            self._changed.wait(timeout)
            self._changed.clear()
            for renewal in renewals:
                if renewal.lost is None and lease_clock() >= renewal.due():
                    renewal.tick()


RENEWER = Renewer()


@dataclass
class Claims:
    """Claims of one process over the things of one queue, with its memory of leases seen."""

    identity: Identity
    lease: float
    observer: Observer = field(default_factory=Observer)
    alive: Callable[[Process], bool] = Process.alive

    def look(self, folder: ClaimFolder) -> tuple[Seen, Liveness]:
        seen = folder.look()
        waited = self.observer.unchanged_for(str(folder.path), seen)
        return seen, judge(seen, self.identity.host, self.alive, waited, self.lease)

    def take(self, folder: ClaimFolder) -> Hold | None:
        """Claim `folder`'s thing, or None while another owner holds it (or won the race)."""
        seen, liveness = self.look(folder)
        if liveness == Liveness.HELD:
            return None
        owner = Owner(
            name=folder.name,
            generation=seen.generation + 1,
            token=secrets.token_hex(8),
            host=self.identity.host.name,
            boot=self.identity.host.boot,
            claimer=self.identity.claimer,
            launcher=self.identity.launcher,
            lease=self.lease,
            by=self.identity.by,
            time=time.time(),
            slurm=self.identity.slurm,
        )
        try:
            created = folder.create(owner)
        except OSError as exc:
            raise ClaimError(folder.path, exc) from None
        if not created:
            return None
        self.observer.forget(str(folder.path))
        folder.prune(below=owner.generation - 1)
        before = seen.owner if liveness in (Liveness.DEAD, Liveness.EXPIRED) else None
        return Hold(folder, owner, taken_over=before)

    def wait_for(self, folder: ClaimFolder, timeout: float, poll: float = 0.05) -> Hold | None:
        """Take `folder`'s thing, waiting up to `timeout` s for its owner to let go."""
        deadline = time.monotonic() + timeout
        while True:
            hold = self.take(folder)
            if hold is not None or time.monotonic() >= deadline:
                return hold
            time.sleep(poll)


class ClaimError(OSError):
    """A claim file could not be created (a full disk, a read-only mount): like any failed
    write to the queue, the worker stops and every run stays as it was."""

    def __init__(self, path: Path, exc: OSError) -> None:
        from .mounts import filesystem_type, mount_point

        kind = filesystem_type(path) or "unknown"
        super().__init__(exc.errno, exc.strerror)
        self.message = (
            f"{path}: cannot create a claim file ({exc.strerror or exc}) on the "
            f"{kind} mount {mount_point(path)}; free some space or make the folder writable "
            "(claims need only file creation, hard links or O_EXCL, and rename)"
        )

    def __str__(self) -> str:
        return self.message


def wait_for_exits(processes: Iterable[Process], poll: float = 2.0) -> None:
    """Block until every one of `processes` has ended (a claim's keepers, on this host).

    Linux: pidfds, so the wait costs nothing; elsewhere a check every `poll` seconds.
    """
    waiting = [p for p in processes if p.alive()]
    pidfd_open = getattr(os, "pidfd_open", None)
    while waiting:
        fds = []
        if pidfd_open is not None:
            for process in waiting:
                with contextlib.suppress(OSError):
                    fds.append(pidfd_open(process.pid))
        try:
            if fds:
                import select

                select.select(fds, [], [], None if len(fds) == len(waiting) else poll)
            else:
                time.sleep(poll)
        finally:
            for fd in fds:
                os.close(fd)
        waiting = [p for p in waiting if p.alive()]
