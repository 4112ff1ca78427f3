"""files.py across processes: a file that cannot be opened is busy (never unreadable), appends
from several processes. Its in-process tests are in tests/unit/test_files.py; the Windows side
runs for real in tests_windows/ (a reader holding files open, appends of four processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .unit.test_core import make_queue

NOBODY = 65534


def test_appends_of_several_processes_are_all_there(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """\
        import sys
        from pathlib import Path
        from mlagents_grid.queue import files
        for n in range(int(sys.argv[3])):
            files.append_line(Path(sys.argv[1]), f'{{"w": "{sys.argv[2]}", "n": {n}}}\\n')
        """
    )
    path = tmp_path / "events.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"w{i}", "500"])
        for i in range(4)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((e["w"], e["n"]) for e in entries) == sorted(
        (f"w{i}", n) for i in range(4) for n in range(500)
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can reach (pytest's own tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="grid-files-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def runs_as_nobody() -> bool:
    """An interpreter under root's home (pyenv's) cannot be loaded by another user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        + [sys.executable, "-c", "import mlagents_grid"],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return done.returncode == 0


@pytest.mark.skipif(
    not runs_as_nobody(),
    reason="needs root, setpriv and an interpreter another user can run, to read the queue "
    "as that user",
)
def test_a_final_file_that_cannot_be_opened_is_busy_never_set_aside(shared_tmp: Path) -> None:
    """What a finished run's final/ file held open meets on Windows (PermissionError): its run
    is skipped for now, never trained again, and the file is never set aside."""
    queue = make_queue(shared_tmp, 2)
    (queue.paths.final_dir / "grid-0.json").write_text(
        json.dumps({"run_id": "grid-0", "status": "done", "attempts": 1})
    )
    for path in [queue.root, *queue.root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    os.chown(queue.paths.final_file("grid-0", 0), 0, 0)
    queue.paths.final_file("grid-0", 0).chmod(0o600)  # root's alone: nobody gets EACCES
    script = textwrap.dedent(
        """\
        import sys
        from pathlib import Path
        from mlagents_grid.queue import files
        from mlagents_grid.queue.claims import Claimer
        from mlagents_grid.queue.ownership import Claims, Identity
        from mlagents_grid.queue.folder import Queue
        from mlagents_grid.results.status import collect
        queue = Queue(Path(sys.argv[1]))
        try:
            files.read_json(queue.paths.final_file("grid-0", 0))
        except files.FileBusy as exc:
            print("busy:", exc)
        claimer = Claimer(queue, Claims(Identity.this(), queue.sweep.lease))
        claimed = claimer.next()
        print("claimed:", claimed and claimed.job.run_id, "skipped:", sorted(claimer.busy))
        print("then:", claimer.next(), "problems:", sorted(claimer.problems))
        print("status:", [run["status"] for run in collect(queue)["runs"]])
        """
    )
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        + [sys.executable, "-c", script, str(queue.root)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"busy: {queue.paths.final_file('grid-0', 0)}: cannot be opened now")
    assert lines[1:] == [
        "claimed: grid-1 skipped: ['grid-0']",
        "then: None problems: []",
        "status: ['busy', 'pending']",
    ]
    assert sorted(p.name for p in queue.paths.final_dir.iterdir()) == ["grid-0.json"]
    assert not list(queue.root.rglob("*.unreadable"))
    assert json.loads(queue.paths.final_file("grid-0", 0).read_text())["status"] == "done"
