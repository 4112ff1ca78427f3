"""Log lines a person can read: `[12:04:31] 3DBall-4 started on port 5009`."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stdout, flush=True)


def _finite_only(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite_only(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite_only(value) for value in data]
    return data


def _strict_item(data: Any) -> str:
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:  # a NaN or infinite number somewhere inside
        return json.dumps(_finite_only(data), allow_nan=False)


def strict_json(data: Any) -> str:
    """JSON every parser accepts: json.dumps would print a NaN or infinite number as a bare
    NaN or Infinity; here it is null (the fields beside such numbers say why).

    The outer two levels are laid out one item a line (a run of grid-status, a point of
    grid-report); each item is written by json's C encoder, which `indent` would turn off.
    """
    return _layout(data, 2)


def _layout(data: Any, levels: int, margin: str = "") -> str:
    inner = margin + " "
    if levels and isinstance(data, dict) and data:
        items = [
            f"{inner}{json.dumps(key)}: {_layout(value, levels - 1, inner)}"
            for key, value in data.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{margin}}}"
    if levels and isinstance(data, list) and data:
        items = [inner + _layout(value, levels - 1, inner) for value in data]
        return "[\n" + ",\n".join(items) + f"\n{margin}]"
    return _strict_item(data)
