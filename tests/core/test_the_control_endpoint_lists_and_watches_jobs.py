"""The control endpoint's ``jobs``, ``job`` and ``watch`` (what the browser UI reads of runtimes in
other processes): a runtime's live jobs with their state, those that record nothing included; a
job's flow as the store keeps it (no agent env value); and a watch that hears of every state
change, parks in between, and is dropped by the runtime as soon as its client goes."""

from __future__ import annotations

import json

import trio
import trio.testing

from runtime import AgentSpec, ExitRule, Flow, JobPaused, Step, open_client, open_runtime
from runtime.testing import WakeupCounter

SECRET = "sk-control-never-4242"
GATES: dict[str, trio.Event] = {}


async def ask(ctx, inputs):
    return {}


async def held(ctx, inputs):
    GATES["started"].set()
    await GATES["go"].wait()
    return {}


PAUSING = Flow("pausing", [Step("ask", run=ask, exits=[ExitRule("human", when="True", action="escalate")]),
                           Step("after", run=ask, after=["ask"])])
HELD = Flow("held", [Step("wait", run=held),
                     Step("talk", agent=AgentSpec(["true"], env={"KEY": SECRET}), prompt="hi", after=["wait"])])


async def _paused(job) -> None:
    async for event in job.events(replay=True):
        if isinstance(event, JobPaused):
            return


async def test_jobs_and_job_describe_a_runtimes_live_jobs_without_env_values(tmp_path):
    GATES.update(started=trio.Event(), go=trio.Event())
    db = tmp_path / "s.db"
    with trio.fail_after(60):
        async with open_runtime(store=db) as rt, open_client(store=db) as client:
            paused = await rt.spawn(PAUSING, record="durable")
            running = await rt.spawn(HELD)  # records nothing: not in the store while it runs
            await _paused(paused)
            await GATES["started"].wait()
            listed = {job["job_id"]: job for job in await client.live_jobs()}
            assert {listed[paused.id]["state"], listed[running.id]["state"]} == {"paused", "running"}
            assert listed[running.id]["record"] == "off" and listed[running.id]["runtime_id"] == rt.id
            described = await client.describe(running.id)
            assert described is not None and described["flow_def"]["name"] == "held"
            agent = described["flow_def"]["steps"][1]["agent"]
            assert agent["env"] == {} and agent["env_from"] == ["KEY"]  # the name, never the value
            assert SECRET not in json.dumps(described)
            assert await client.describe("no-such-job") is None
            GATES["go"].set()
            await running.wait()


async def test_a_watch_hears_each_change_parks_in_between_and_ends_with_its_client(tmp_path):
    db = tmp_path / "s.db"
    counter = WakeupCounter(lambda task: task.name.startswith("runtime.core.control") or "control" in task.name)
    with trio.fail_after(60):
        async with open_runtime(store=db) as rt, open_client(store=db) as client:
            heard: list[set[str] | None] = []
            first = trio.Event()

            async def watch() -> None:
                async for changed in client.watch():
                    heard.append(changed)
                    first.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                while not rt.job_watch.watchers:  # noqa: ASYNC110 -- the client finds the runtime in the store first
                    await trio.sleep(0.01)
                job = await rt.spawn(PAUSING, record="durable")
                await first.wait()
                await _paused(job)
                await trio.testing.wait_all_tasks_blocked(0.05)
                assert rt.job_watch.watchers == 1
                trio.lowlevel.add_instrument(counter)
                await trio.sleep(0.5)  # paused: nothing changes, the watch parks
                trio.lowlevel.remove_instrument(counter)
                assert counter.count == 0, counter.names
                await job.resume({})
                await job.wait()
                await trio.testing.wait_all_tasks_blocked(0.05)
                assert all(changed is None or changed == {job.id} for changed in heard)
                assert sum(1 for changed in heard if changed) >= 3  # started, paused, resumed, finished
                nursery.cancel_scope.cancel()  # the client goes away
            with trio.fail_after(10):
                while rt.job_watch.watchers:  # noqa: ASYNC110 -- the server notices the closed socket
                    await trio.sleep(0.01)
