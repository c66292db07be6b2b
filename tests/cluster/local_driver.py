"""A driver process for test_no_address_starts_and_stops_its_own_ray.py: ``RayCluster()`` with no
address starts its own local Ray instance; it reports what it saw on one ``REPORT {json}`` line
after the block.  ``python tests/cluster/local_driver.py``."""

from __future__ import annotations

import json
import sys

import psutil
import ray
import trio

from runtime import AgentSpec, Flow, Step
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.steps import echo

FAKE = [sys.executable, "-m", "actors.fake_agent", "--delay", "0.001"]


async def main() -> None:
    flow = Flow("local", [Step("agent", agent=AgentSpec(FAKE), prompt="hello {$job.n}"),
                          Step("tail", run=echo, inputs={"n": "$job.n"}, after=["agent"])])
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=2), term_grace=0.5) as rt:
        # the Ray instance this block started runs as this process's children
        ray_pids = [p.pid for p in psutil.Process().children(recursive=True)
                    if p.name() in ("gcs_server", "raylet")]
        result = await (await rt.spawn(flow, {"n": 1})).wait()
        report = {"state": result.state.value, "outputs": result.outputs, "ray_pids": ray_pids,
                  "host_pid": rt.hosts[0].pid, "runtime_id": rt.hosts[0].runtime_id,
                  "initialized_inside": ray.is_initialized()}
    report["initialized_after"] = ray.is_initialized()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    trio.run(main)
