"""A controller process for test_a_new_controller_adopts_the_jobs_of_a_killed_one.py: it starts
jobs on a named cluster, reports them on one ``READY {json}`` line, then waits to be killed (a
crashed controller).  ``python tests/cluster/controller_process.py ADDRESS NAME GATE``."""

from __future__ import annotations

import json
import sys

import trio

from runtime import AgentSpec, ExitRule, Flow, JobPaused, Step, event_to_dict
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.steps import echo

FAKE = [sys.executable, "-m", "actors.fake_agent", "--delay", "0.001"]


def flows(gate: str) -> dict[str, Flow]:
    wait_for_gate = ["sh", "-c", f'read -r line < "{gate}"; echo "$line"']  # gate: a FIFO; blocks
    return {
        "slow": Flow("slow", [Step("agent", agent=AgentSpec([*FAKE, "--slow", "--delay", "0.05", "--grandchild"]),
                                   prompt="work")]),
        "paused": Flow("paused", [
            Step("check", run=echo, inputs={"n": "$job.n"},
                 exits=[ExitRule("ask", when="True", action="escalate")]),
            Step("after", run=echo, inputs={"ok": "$resume.ok"}, after=["check"])]),
        "gated": Flow("gated", [Step("wait", command=wait_for_gate)]),
    }


async def main(address: str, name: str, gate: str) -> None:
    cluster = RayCluster(address=address, name=name, hosts=2, jobs_per_host=4)
    async with open_cluster_runtime(cluster, term_grace=0.5) as rt:
        jobs = {kind: await rt.spawn(flow, {"n": 3}) for kind, flow in flows(gate).items()}
        seen = []
        async for event in jobs["slow"].events(replay=True):
            seen.append(event_to_dict(event))
            if len(seen) == 6:
                break
        async for event in jobs["paused"].events(replay=True):  # its state is PAUSED from here
            if isinstance(event, JobPaused):
                break
        report = {"ids": {kind: h.id for kind, h in jobs.items()}, "seen": seen,
                  "hosts": [h.pid for h in rt.hosts], "runtime_ids": [h.runtime_id for h in rt.hosts]}
        print("READY " + json.dumps(report), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
