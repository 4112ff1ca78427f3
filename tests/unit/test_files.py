"""files.py without processes: which errors are sharing violations, the wait for one to end and
its bound, a cut-off file still unreadable (not busy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlagents_grid.errors import GridError
from mlagents_grid.queue import files


def windows_error(winerror: int) -> PermissionError:
    """A PermissionError as Windows Python raises it (its winerror set)."""
    error = PermissionError(13, "denied")
    error.winerror = winerror  # type: ignore[attr-defined]  # set by Python on Windows only
    return error


@pytest.mark.parametrize(
    ("error", "sharing"),
    [
        (windows_error(5), True),  # a rename onto an open or delete-pending file
        (windows_error(32), True),  # ERROR_SHARING_VIOLATION
        (windows_error(33), True),  # ERROR_LOCK_VIOLATION
        (windows_error(1), False),
        (PermissionError(13, "denied"), False),  # POSIX EACCES: no one is about to let go
        (FileNotFoundError(2, "gone"), False),
    ],
)
def test_which_errors_are_sharing_violations(error: OSError, sharing: bool) -> None:
    assert files.sharing_violation(error) is sharing


def test_a_sharing_violation_is_waited_out() -> None:
    calls: list[int] = []

    def held_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise windows_error(32)
        return "done"

    assert files.patiently(held_twice) == "done"
    assert len(calls) == 3


def test_a_lasting_sharing_violation_fails_after_the_wait_and_other_errors_at_once() -> None:
    calls: list[int] = []

    def always(error: OSError) -> None:
        calls.append(1)
        raise error

    with pytest.raises(PermissionError):
        files.patiently(lambda: always(windows_error(5)), wait=0.05)
    assert len(calls) > 2
    calls.clear()
    with pytest.raises(PermissionError):
        files.patiently(lambda: always(PermissionError(13, "denied")))
    assert len(calls) == 1


def test_an_unreadable_file_is_still_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"run_id": ')
    with pytest.raises(GridError, match="unreadable") as raised:
        files.read_json(path)
    assert not isinstance(raised.value, files.FileBusy)
