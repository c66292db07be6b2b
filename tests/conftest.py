"""Shared fixtures.  pytest-trio runs every async test (trio_mode in pyproject.toml)."""

from __future__ import annotations

import pytest

from runtime.testing import WakeupCounter


@pytest.fixture
def wakeups() -> WakeupCounter:
    """An Instrument counting scheduler wakeups of job tasks (pytest-trio installs it)."""
    return WakeupCounter()
