"""Which filesystem holds a path, from /proc/mounts: for messages and for choosing how to
watch a shared folder (inotify sees no other host's writes)."""

from __future__ import annotations

import os
from pathlib import Path

# inotify does not see files that other hosts write on these (README: Running on a cluster).
SHARED_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "cephfs", "ceph"}
)
MOUNTS = Path("/proc/mounts")


def _mount(path: Path, mounts_file: Path) -> tuple[str, str]:
    """The mount point holding `path` and its type, from /proc/mounts ("" when unknown)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open(mounts_file, encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return "", ""
    return best, kind


def filesystem_type(path: Path, mounts_file: Path = MOUNTS) -> str:
    """The type of the mount holding `path` ("" when unknown)."""
    return _mount(path, mounts_file)[1]


def mount_point(path: Path, mounts_file: Path = MOUNTS) -> str:
    """The mount holding `path` (the path itself when unknown), for messages."""
    return _mount(path, mounts_file)[0] or str(path)


def is_shared(path: Path, mounts_file: Path = MOUNTS) -> bool:
    kind = filesystem_type(path, mounts_file)
    return kind in SHARED_FILESYSTEMS or kind.startswith("fuse.")
