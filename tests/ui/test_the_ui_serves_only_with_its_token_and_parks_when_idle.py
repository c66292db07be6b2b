"""The UI an embedding app starts with ``rt.serve_ui()``: in the runtime's service nursery, on
loopback, every page and feed behind the token, every action a POST with the token in a header;
actions go through the control client and are refused with a status and a message when the job's
state does not allow them; an agent's env value is never served; and open pages of idle jobs
schedule nothing on the server (its event streams park until an event)."""

from __future__ import annotations

import trio
import trio.testing
from http_support import Http

from runtime import AgentSpec, ExitRule, Flow, JobPaused, JobState, Step, open_client, open_runtime
from runtime.testing import WakeupCounter
from runtime.ui import JobSource, serve

SECRET = "sk-do-not-show-7731"
BOUND = 60
GATES: dict[str, trio.Event] = {}


async def ask(ctx, inputs):
    return {"question": "ship it?"}


async def decide(ctx, inputs):
    return {"answer": inputs["answer"]}


async def held(ctx, inputs):
    GATES["started"].set()
    await GATES["held"].wait()
    return {}


APPROVAL = Flow("approval", [
    Step("ask", run=ask, exits=[ExitRule("human", when="True", action="escalate")]),
    Step("decide", run=decide, after=["ask"], inputs={"answer": "$resume.answer"}),
])
HELD = Flow("held", [Step("wait", run=held)])
HELD_FREE = Flow("free", [Step("ask", run=ask)])
SECRETIVE = Flow("secretive", [Step("talk", agent=AgentSpec(["true"], env={"API_KEY": SECRET}), prompt="hi")])


async def _until(job, kind) -> None:
    async for event in job.events(replay=True):
        if isinstance(event, kind):
            return


async def test_pages_feeds_and_actions_need_the_token_and_actions_follow_the_jobs_state(tmp_path):
    GATES["held"], GATES["started"] = trio.Event(), trio.Event()
    with trio.fail_after(BOUND):
        await _steer(tmp_path)


async def _steer(tmp_path):
    async with open_runtime(store=tmp_path / "s.db") as rt:
        url = await rt.serve_ui()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        http = Http(url)
        paused = await rt.spawn(APPROVAL, record="durable")
        running = await rt.spawn(HELD)  # records nothing: listed from its live runtime
        await _until(paused, JobPaused)
        await GATES["started"].wait()  # it records nothing: no replay to wait on

        status, body = await http.request("GET", "/api/jobs")
        assert status == 200
        listed = {job["job_id"]: job for job in __import__("json").loads(body)["jobs"]}
        assert listed[paused.id]["state"] == "paused" and listed[running.id]["state"] == "running"
        assert listed[running.id]["owner_alive"] and listed[running.id]["record"] == "off"

        # the token: every page and feed, and only a header makes an action
        for path in ("/", f"/jobs/{paused.id}", "/api/jobs", f"/api/jobs/{paused.id}/events"):
            assert (await http.request("GET", path, token=False))[0] == 403, path
            assert (await http.request("GET", path, token="not-the-token"))[0] == 403, path
        assert (await http.request("POST", f"/api/jobs/{running.id}/cancel", json_body={}))[0] == 403
        assert running.state is JobState.RUNNING  # refused before it reached the job
        assert (await http.request("GET", "/static/app.js", token=False))[0] == 200
        # a malformed cookie is no token (and no crash)
        assert (await http.request("GET", "/", token=False, headers={"Cookie": "a=b; $$=x"}))[0] == 403

        status, body = await http.request("POST", f"/api/jobs/{running.id}/resume", header_token=True,
                                          json_body={"payload": {}})
        assert status == 409 and b"not paused" in body
        status, body = await http.request("POST", f"/api/jobs/{paused.id}/resume", header_token=True,
                                          raw_body=b"{not json")
        assert status == 400 and b"not JSON" in body and paused.state is JobState.PAUSED
        assert (await http.request("POST", "/api/jobs/nope/cancel", header_token=True, json_body={}))[0] == 404

        status, body = await http.request("POST", f"/api/jobs/{running.id}/cancel", header_token=True,
                                          json_body={"reason": "from the ui"})
        assert status == 200 and b'"cancelled"' in body
        assert (await running.wait()).reason == "from the ui"
        status, _ = await http.request("POST", f"/api/jobs/{paused.id}/resume", header_token=True,
                                       json_body={"payload": {"answer": "yes"}})
        assert status == 200
        result = await paused.wait()
        assert (result.state, result.outputs["decide"]) == (JobState.COMPLETED, {"answer": "yes"})
        status, body = await http.request("POST", f"/api/jobs/{paused.id}/cancel", header_token=True, json_body={})
        assert status == 409 and b"has ended" in body


async def test_an_agents_env_value_is_never_served(tmp_path):
    with trio.fail_after(BOUND), trio.CancelScope():
        await _never_served(tmp_path)


async def _never_served(tmp_path):
    async with open_runtime(store=tmp_path / "s.db") as rt:
        http = Http(await rt.serve_ui())
        job = await rt.spawn(SECRETIVE, record="durable")
        await job.wait()  # `true` is no ACP agent: the step fails, the job is stored
        for path in ("/", f"/jobs/{job.id}", f"/api/jobs/{job.id}", "/api/jobs"):
            status, body = await http.request("GET", path)
            assert status == 200 and job.id.encode()[:12] in body, path
            assert SECRET.encode() not in body, path


async def test_open_pages_of_idle_jobs_schedule_nothing_on_the_server(tmp_path, autojump_clock):
    counter = WakeupCounter(lambda task: True)
    async with open_runtime() as rt:  # the in-memory store: no writer thread for the clock to jump over
        http = Http(await rt.serve_ui())
        paused = await rt.spawn(APPROVAL, record="memory")
        await _until(paused, JobPaused)
        changes = await http.open_stream("/api/jobs/changes")
        events = await http.open_stream(f"/api/jobs/{paused.id}/events")
        seen = []
        while not seen or seen[-1][1]["type"] != "job_paused":
            seen.append(await events.next())
        await trio.testing.wait_all_tasks_blocked()
        me = trio.lowlevel.current_task()
        counter.predicate = lambda task: task is not me
        trio.lowlevel.add_instrument(counter)
        try:
            await trio.sleep(3600)  # an hour of an open list and an open job page
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.count == 0, counter.names
        await paused.resume({"answer": "no"})  # and the list hears of it
        assert (await changes.next())[0] == "changed"
        await changes.aclose()
        await events.aclose()


async def test_the_list_feed_of_a_store_with_no_live_runtime_stays_open_and_silent(tmp_path):
    # an ended feed would have the browser reconnect (and re-read the list) every few seconds
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        await (await rt.spawn(HELD_FREE, record="durable")).wait()
    async with open_client(store=db) as client, trio.open_nursery() as nursery:
        http = Http(await nursery.start(serve, JobSource(client), 0))
        status, body = await http.request("GET", "/api/jobs")
        assert status == 200 and b'"completed"' in body
        changes = await http.open_stream("/api/jobs/changes")
        with trio.move_on_after(1.0) as parked:
            await changes.next()  # a message, or EOFError if the stream ended
        assert parked.cancelled_caught and changes.status == 200
        await changes.aclose()
        nursery.cancel_scope.cancel()
