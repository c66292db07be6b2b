"""``RayCluster()`` with no address starts a local Ray instance, so the cluster runtime works on one
machine with nothing running beforehand; leaving the block stops that instance again.

A separate driver process (local_driver.py) so that this one never connects to Ray.  It gets a
Ray temp directory of its own (``RAY_TMPDIR``): Ray with no address joins the head that
``ray start`` last recorded in its temp directory, so the package's head (``ray_head``), or one a
developer runs, is not what it finds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from actors.process import find_marked

from .support import alive

pytest.importorskip("ray")  # the ``ray`` extra; CI installs it

DRIVER = Path(__file__).with_name("local_driver.py")


async def test_no_address_starts_a_local_ray_instance_and_stops_it_after_the_block():
    ray_tmp = tempfile.mkdtemp(prefix="corral-ray-", dir="/tmp")  # short: Ray puts sockets under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # nothing to connect to
    env["RAY_TMPDIR"] = ray_tmp
    try:
        with trio.fail_after(180):
            done = await trio.run_process([sys.executable, str(DRIVER)], env=env,
                                          capture_stdout=True, capture_stderr=True, check=False)
        out = done.stdout.decode()
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        report = json.loads(next(line for line in out.splitlines() if line.startswith("REPORT "))[7:])
        assert report["state"] == "completed", report
        assert report["outputs"]["tail"] == {"echo": {"n": 1}}
        assert "hello 1" in report["outputs"]["agent"]["text"]
        # it started Ray itself (GCS and raylet were its children), and shut it down on the way out
        assert report["ray_pids"], report
        assert (report["initialized_inside"], report["initialized_after"]) == (True, False)
        left = [report["host_pid"], *report["ray_pids"]]
        with trio.fail_after(30):  # polling the OS process table until they died
            while any(alive(p) for p in left) or find_marked(lambda m: m.runtime_id == report["runtime_id"]):  # noqa: ASYNC110
                await trio.sleep(0.1)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
