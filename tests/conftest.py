"""Shared test setup.  pytest-trio runs every async test (trio_mode in pyproject.toml); the
``corral_runtime`` and ``wakeups`` fixtures come from corral's own pytest plugin
(``runtime.testing.plugin``, a ``pytest11`` entry point), as they do for users."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def immutable():
    """``chattr +i``: a file root cannot write either (root ignores permission bits), undone after."""
    paths: list[Path] = []

    def make(path: Path) -> Path:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
        paths.append(path)
        return path

    yield make
    for path in reversed(paths):
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
