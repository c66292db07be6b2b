"""What a Ray user writes in one script, for test_what_a_script_defines_runs_on_hosts.py: a step
defined here (``__main__``), a closure, a lambda exit rule and a callable object, one flow run
embedded and then on two hosts of the Ray cluster at ``RAY_ADDRESS`` (the tests' head).  It
reports both results on one ``REPORT {json}`` line.  ``python tests/cluster/script_driver.py``."""

from __future__ import annotations

import json

import trio

from runtime import ExitRule, Flow, Step, open_runtime
from runtime.cluster import RayCluster, open_cluster_runtime


async def ok(ctx, inputs):
    return {"ok": True, "n": inputs["n"]}


def make_step(k):
    async def scaled(ctx, inputs):
        return {"value": inputs["n"] * k}
    return scaled


class Doubler:
    async def __call__(self, ctx, inputs):
        return {"value": inputs["value"] * 2}


def flow(n: int) -> Flow:
    return Flow("script", [
        Step("ok", run=ok, inputs={"n": "$job.n"}),
        Step("scale", run=make_step(10), inputs={"n": "$ok.n"}, after=["ok"],
             exits=[ExitRule("too_big", when=lambda outputs: outputs["value"] > 50, action="abandon")]),
        Step("double", run=Doubler(), inputs={"value": "$scale.value"}, after=["scale"]),
    ])


def summary(result) -> dict:
    return {"state": result.state.value, "reason": result.reason, "outputs": result.outputs}


async def main() -> None:
    report: dict = {"embedded": [], "cluster": []}
    async with open_runtime() as rt:
        for n in (2, 7):
            report["embedded"].append(summary(await (await rt.spawn(flow(n), {"n": n})).wait()))
    async with open_cluster_runtime(RayCluster(address="auto", hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
        handles = [await rt.spawn(flow(n), {"n": n}) for n in (2, 7)]
        report["cluster"] = [summary(await h.wait()) for h in handles]
        report["host_pids"] = sorted({h.host_pid for h in handles})
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    trio.run(main)
