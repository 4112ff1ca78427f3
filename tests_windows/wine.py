"""What this tier needs to know about Wine, which runs it here but is not Windows."""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from typing import TypeVar

# Wine's CreateProcess now and then fails with ERROR_INTERNAL_ERROR on a busy host (seen
# once in CI, starting a worker that had started fine in every earlier run). Nothing was
# started, so starting again is safe; on Windows the error does not happen and is raised.
WINE_INTERNAL_ERROR = 1359
STARTS = 5
BETWEEN_STARTS_S = 0.5

Started = TypeVar("Started")


def wine_version() -> str | None:
    """Wine's version when this Windows process runs under Wine, else None."""
    if sys.platform != "win32":
        return None
    try:
        get = ctypes.WinDLL("ntdll").wine_get_version
    except (AttributeError, OSError):
        return None
    get.restype = ctypes.c_char_p
    return str(get().decode())


def started(start: Callable[[], Started]) -> Started:
    """`start()` (a subprocess.Popen or subprocess.run), again when Wine fails to create the
    process."""
    for attempt in range(1, STARTS):
        try:
            return start()
        except OSError as error:
            if getattr(error, "winerror", None) != WINE_INTERNAL_ERROR or wine_version() is None:
                raise
            print(f"Wine failed to create a process (attempt {attempt}): {error}", flush=True)
            time.sleep(BETWEEN_STARTS_S)
    return start()
