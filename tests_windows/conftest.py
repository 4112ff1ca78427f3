"""The Windows tier: run inside a Windows CPython (under Wine: `make test-windows`).

It runs on Linux too (`.venv/bin/pytest tests_windows`), to debug a test quickly; the
Windows-only checks then skip.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import runner_support as support

from .wine import wine_version


def pytest_report_header() -> str:
    wine = wine_version()
    return f"platform: {sys.platform}, Python {sys.version.split()[0]}" + (
        f", under Wine {wine}" if wine else ""
    )


@pytest.fixture
def runners() -> Iterator[support.Runners]:
    started = support.Runners()
    yield started
    started.end_all()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder whose path has a space in it."""
    path = tmp_path / "my results"
    path.mkdir()
    return path
