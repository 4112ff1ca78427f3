"""Log lines a person can read: `[12:04:31] 3DBall-4 started on port 5009`."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stdout, flush=True)
