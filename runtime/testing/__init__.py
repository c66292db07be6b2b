"""Leak checks for users' own tests and health checks; pytest fixtures in a plugin.

``from runtime.testing import assert_no_leaks`` imports no pytest, so an app installed without
the dev extra can call it.  With corral installed, pytest loads :mod:`runtime.testing.plugin`
through its ``pytest11`` entry point, so a test can take the ``corral_runtime`` and ``wakeups``
fixtures with no conftest import::

    async def test_my_flow(corral_runtime):
        job = await corral_runtime.spawn(my_flow)
        await job.wait()
        assert_no_leaks(corral_runtime)  # corral_runtime also checks when the test ends
"""

from .leaks import LeakError as LeakError
from .leaks import WakeupCounter as WakeupCounter
from .leaks import assert_no_leaks as assert_no_leaks
from .leaks import job_tasks as job_tasks
from .leaks import marked_processes as marked_processes
from .leaks import wait_exited as wait_exited

__all__ = ["LeakError", "WakeupCounter", "assert_no_leaks", "job_tasks", "marked_processes", "wait_exited"]
