"""The actor primitive: bounded mailbox, ask, supervision, actors inside jobs."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import Actor, ActorStopped, RestartIntensityExceeded, Supervisor
from runtime import Flow, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks


class Counter(Actor):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.total = 0
        self.gate = trio.Event()

    async def handle(self, msg):
        if msg == "block":
            await self.gate.wait()
        elif msg == "crash":
            raise RuntimeError("crash")
        elif msg == "get":
            return self.total
        else:
            self.total += msg
        return self.total


async def test_full_mailbox_applies_backpressure(autojump_clock):
    actor = Counter(mailbox_size=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await actor.send("block")  # taken by the actor, which now blocks
        await trio.testing.wait_all_tasks_blocked()
        actor.send_nowait(1)
        actor.send_nowait(2)
        with pytest.raises(trio.WouldBlock):
            actor.send_nowait(3)
        sent = False

        async def sender():
            nonlocal sent
            await actor.send(3)
            sent = True

        nursery.start_soon(sender)
        await trio.sleep(10)
        assert not sent  # still waiting for mailbox space
        actor.gate.set()
        await trio.testing.wait_all_tasks_blocked()  # the actor drained the mailbox
        assert sent
        assert await actor.ask("get") == 6
        actor.stop()


async def test_ask_to_stopped_actor_raises(autojump_clock):
    actor = Counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        assert await actor.ask(5) == 5
        actor.stop()
    with pytest.raises(ActorStopped):
        await actor.ask(1)
    with pytest.raises(ActorStopped):
        actor.send_nowait(1)


async def test_pending_ask_fails_when_actor_stops(autojump_clock):
    actor = Counter()
    async with trio.open_nursery() as nursery:
        actor_scope = trio.CancelScope()

        async def host(task_status=trio.TASK_STATUS_IGNORED):
            with actor_scope:
                await actor.run(task_status=task_status)

        await nursery.start(host)
        await actor.send("block")

        async def stop_later():
            await trio.sleep(1)
            actor_scope.cancel()

        nursery.start_soon(stop_later)
        with trio.fail_after(5), pytest.raises(ActorStopped):
            await actor.ask("get")
    assert not actor.running


async def test_ask_timeout(autojump_clock):
    actor = Counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await actor.send("block")
        with pytest.raises(trio.TooSlowError):
            await actor.ask("get", timeout=3)
        actor.gate.set()
        assert await actor.ask("get") == 0
        actor.stop()


async def test_supervisor_restarts_then_escalates(autojump_clock):
    made = []

    def factory():
        made.append(Counter())
        return made[-1]

    sup = Supervisor(factory, max_restarts=2, window=10)
    caught = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for _ in range(3):
                await trio.sleep(1)
                await sup.actor.send("crash")
            await trio.sleep_forever()
    except* RestartIntensityExceeded as group:
        caught.extend(group.exceptions)
    assert len(caught) == 1 and isinstance(caught[0].__cause__, RuntimeError)
    assert len(made) == 3 and sup.restarts == 2


async def test_supervisor_window_forgets_old_crashes(autojump_clock):
    sup = Supervisor(Counter, max_restarts=1, window=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for _ in range(4):
            await sup.actor.send("crash")
            await trio.sleep(6)  # each crash falls out of the window before the next
        assert sup.restarts == 4
        assert await sup.actor.ask(7) == 7  # a fresh incarnation, fresh state
        nursery.cancel_scope.cancel()


async def test_actor_started_in_step_dies_with_job(autojump_clock):
    actor = Counter()

    async def step(ctx, inputs):
        await ctx.start_actor(actor)
        await actor.send(3)
        return {"total": await actor.ask("get")}

    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=step)]))
        result = await job.wait()
        assert result.state is JobState.COMPLETED and result.outputs["a"] == {"total": 3}
        assert not actor.running
        with pytest.raises(ActorStopped):
            await actor.ask("get")
        assert_no_leaks(rt)


async def test_stop_before_run_ends_run_at_once_and_refuses_sends():
    actor = Counter()
    actor.stop()  # before it ever ran, and before its mailbox was made
    with pytest.raises(ActorStopped):
        actor.send_nowait(1)
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)  # serves nothing and returns
    assert not actor.running
