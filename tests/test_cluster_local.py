"""``RayCluster()`` with no address starts a local Ray instance, so the cluster runtime works on one
machine with nothing running beforehand; leaving the block stops that instance again.

A separate driver process (tests/cluster_local.py) so that this one never connects to Ray; it runs
after test_cluster.py, whose module fixture has stopped that module's Ray head by then.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psutil
import pytest
import trio

from actors.process import find_marked

pytest.importorskip("ray")  # the ``ray`` extra; CI installs it

HERE = Path(__file__).parent


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_no_address_starts_a_local_ray_instance_and_stops_it_after_the_block():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # nothing to connect to
    with trio.fail_after(180):
        done = await trio.run_process([sys.executable, str(HERE / "cluster_local.py")], env=env,
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
    with trio.fail_after(30):
        while any(alive(p) for p in left) or find_marked(lambda m: m.runtime_id == report["runtime_id"]):
            await trio.sleep(0.1)
