"""Run a tool (grid-worker, grid-monitor, grid-plan, grid-retry) with its Nth atomic rename
sabotaged, for fault injection.

    python -m tests.support.faulty {before|after|enospc} N grid-worker ARGS...

`before`: SIGKILL between writing the temporary file and renaming it; `after`: SIGKILL right
after the rename; `enospc`: the rename fails with "No space left on device".
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Any

from mlagents_grid import cli

ENTRY_POINTS = {
    "grid-worker": cli.worker_main,
    "grid-monitor": cli.monitor_main,
    "grid-plan": cli.plan_main,
    "grid-retry": cli.retry_main,
}


def main() -> None:
    point, target, tool, *args = sys.argv[1:]
    real_replace = os.replace
    calls = 0

    def replace(src: Any, dst: Any, *rest: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == int(target):
            if point == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            if point == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_replace(src, dst, *rest, **kwargs)
        if calls == int(target) and point == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    sys.argv = [tool, *args]
    ENTRY_POINTS[tool]()


if __name__ == "__main__":
    main()
