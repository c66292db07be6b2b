"""corral's pytest plugin (registered as the ``pytest11`` entry point ``corral``).

Fixtures: ``corral_runtime`` (an open runtime; after the test, leaving it must leave nothing
behind) and ``wakeups`` (a :class:`~runtime.testing.WakeupCounter`: pytest-trio installs every
Instrument fixture in the test's trio run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..core.runtime import Runtime, open_runtime
from .leaks import WakeupCounter, assert_no_leaks

__all__ = ["corral_runtime", "wakeups"]


@pytest.fixture
async def corral_runtime() -> AsyncIterator[Runtime]:
    """An open runtime; after the test, leaving it must leave nothing behind."""
    async with open_runtime() as rt:
        yield rt
    assert_no_leaks(rt)


@pytest.fixture
def wakeups() -> WakeupCounter:
    """An Instrument counting scheduler wakeups of job tasks (pytest-trio installs it)."""
    return WakeupCounter()
