"""Several hosts on one queue: per-host port slots, host:pid identities, polling on shared disks.

Hosts are UTS namespaces (`unshare --uts`, root only) with their own hostnames; the tests
skip with the reason where the namespace cannot be made.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.mounts import filesystem_type, is_shared

from .conftest import as_host, fake_trainer_command, run_cli, write
from .support.bounds import EXIT_S, SWEEP_S

HOSTS = ("grid-alpha", "grid-beta")
# A stop seen by --polling: the 1 s poll and the trainer's save, well under the worker's 5 s
# periodic re-check (1 s at most in `make test-loaded` runs).
POLLED_STOP_S = 3.0


@pytest.mark.usefixtures("namespaces")
def test_two_hosts_share_one_queue(new_sweep, tmp_path: Path) -> None:
    sweep = new_sweep(tmp_path, runs=6, ticks=20, options={"default": {"step_delay": 0.05}})
    command = sweep.command("grid-worker", "--trainer", fake_trainer_command())
    workers = [sweep.start(as_host(host, command)) for host in HOSTS]
    assert [w.wait(timeout=SWEEP_S) for w in workers] == [0, 0]
    assert set(sweep.statuses().values()) == {"done"}
    for run_id in sweep.statuses():
        assert len(sweep.starts(run_id)) == 1, run_id
    # Each host has its own slot 0, so both trainers used the sweep's base port.
    started = {(e["worker"].split(":")[0], e["slot"]) for e in sweep.events("worker-started")}
    assert started == {(host, 0) for host in HOSTS}
    assert {start["port"] for start in sweep.starts()} == {5005}
    assert {p.name for p in (sweep.queue_dir / "slots").iterdir()} == {
        f"{host}.0" for host in HOSTS
    }
    ran_on = {row["worker"].split(":")[0] for row in sweep.report()["runs"]}
    assert ran_on == set(HOSTS)
    shown = run_cli(cli.status_command, "grid-status", ["--queue", str(sweep.queue_dir)])
    assert all(host in shown.out for host in HOSTS), shown.out


def test_shared_filesystems_are_told_from_proc_mounts(tmp_path: Path) -> None:
    mounts = write(
        tmp_path / "mounts",
        """\
        /dev/sda1 / ext4 rw 0 0
        server:/export /mnt/shared nfs4 rw,relatime 0 0
        lab:/home /mnt/shared/home\\040dirs cifs rw 0 0
        sshfs#me@host: /mnt/remote fuse.sshfs rw 0 0
        tmpfs /mnt/shared/tmp tmpfs rw 0 0
        """,
    )
    kinds = {
        "/mnt/shared/q": "nfs4",
        "/mnt/shared": "nfs4",
        "/mnt/sharedx/q": "ext4",
        "/mnt/shared/home dirs/q": "cifs",
        "/mnt/shared/tmp/q": "tmpfs",
        "/mnt/remote/q": "fuse.sshfs",
    }
    for path, kind in kinds.items():
        assert filesystem_type(Path(path), mounts) == kind, path
    shared = {path for path in kinds if is_shared(Path(path), mounts)}
    assert shared == {"/mnt/shared/q", "/mnt/shared", "/mnt/shared/home dirs/q", "/mnt/remote/q"}
    assert not is_shared(tmp_path)


def test_polling_workers_drain_the_queue_and_see_kill_files(new_sweep, tmp_path: Path) -> None:
    """--polling, as on NFS: a stop request is seen within the poll interval, not inotify."""
    sweep = new_sweep(tmp_path, runs=3, ticks=400, options={"default": {"step_delay": 0.05}})
    worker = sweep.start_worker("--polling", "--wait")
    for run_id in sweep.statuses():
        sweep.wait_for_training(run_id)
        asked = time.time()
        sweep.stop(run_id)
        exit_ = sweep.wait_for(lambda run_id=run_id: sweep.exits(run_id))[0]
        assert exit_["time"] - asked < POLLED_STOP_S, run_id
    assert worker.wait(timeout=EXIT_S) == 0
    assert sweep.statuses() == {f"grid-{i}": "stopped" for i in range(3)}
    assert "by polling every 1s" in sweep.output(worker)
