"""Windows file access that Python's open() does not offer: CreateFileW with delete sharing
(a reader that never blocks a rename or removal) and with append-only access under a lock
(appends that concurrent writers cannot overwrite). files.py calls these on Windows only.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

GENERIC_READ = 0x80000000
FILE_APPEND_DATA = 0x0004
FILE_SHARE_ALL = 0x1 | 0x2 | 0x4  # read, write, delete
OPEN_EXISTING, OPEN_ALWAYS = 3, 4
FILE_ATTRIBUTE_NORMAL = 0x80
LOCKFILE_EXCLUSIVE_LOCK = 0x2


class _Overlapped(ctypes.Structure):
    """OVERLAPPED, as LockFileEx takes the region's offset."""

    _fields_ = [
        ("Internal", ctypes.c_void_p),
        ("InternalHigh", ctypes.c_void_p),
        ("Offset", ctypes.c_uint32),
        ("OffsetHigh", ctypes.c_uint32),
        ("hEvent", ctypes.c_void_p),
    ]


@functools.cache
def _kernel32() -> Any:
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    ]
    kernel32.WriteFile.argtypes = [
        wintypes.HANDLE,
        ctypes.c_char_p,
        wintypes.DWORD,
        ctypes.POINTER(wintypes.DWORD),
        wintypes.LPVOID,
    ]
    kernel32.LockFileEx.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    ]
    kernel32.UnlockFileEx.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(_Overlapped),
    ]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    return kernel32


def _create_file(path: Path, access: int, disposition: int) -> int:
    """A Windows handle on `path`, shared for read, write and delete; OSError as open() says."""
    kernel32 = _kernel32()
    handle = kernel32.CreateFileW(
        str(path), access, FILE_SHARE_ALL, None, disposition, FILE_ATTRIBUTE_NORMAL, None
    )
    if handle is None or handle == ctypes.c_void_p(-1).value:
        code = ctypes.get_last_error()  # type: ignore[attr-defined]
        # OSError picks the subclass (FileNotFoundError, PermissionError) from the code.
        raise OSError(None, ctypes.FormatError(code), str(path), code)  # type: ignore[attr-defined]
    return int(handle)


def read_sharing_delete(path: Path) -> bytes:
    """A file's bytes, read through a handle that lets others replace or remove it."""
    import msvcrt

    handle = _create_file(path, GENERIC_READ, OPEN_EXISTING)
    try:
        fd = msvcrt.open_osfhandle(handle, os.O_RDONLY)  # type: ignore[attr-defined]
    except OSError:
        _kernel32().CloseHandle(handle)
        raise
    with open(fd, "rb") as handle_file:
        return handle_file.read()


def append(path: Path, data: bytes) -> None:
    """Append `data` in one locked write through an append-only handle."""
    from ctypes import wintypes

    kernel32 = _kernel32()
    # Read access too: LockFileEx needs it. Without FILE_WRITE_DATA every write appends.
    handle = _create_file(path, FILE_APPEND_DATA | GENERIC_READ, OPEN_ALWAYS)
    try:
        region = _Overlapped(Offset=0xFFFFFFFF, OffsetHigh=0x7FFFFFFF)  # no reader reaches it
        if not kernel32.LockFileEx(handle, LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, ctypes.byref(region)):
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
        try:
            written = wintypes.DWORD()
            if not kernel32.WriteFile(handle, data, len(data), ctypes.byref(written), None):
                raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
        finally:
            kernel32.UnlockFileEx(handle, 0, 1, 0, ctypes.byref(region))
    finally:
        kernel32.CloseHandle(handle)
