"""Jobs on a Ray cluster: same API, same containment (real Ray, real subprocesses, real clock).

The module starts one Ray head the way an operator does (``ray start --head``) and this process
connects to it once as a driver; a controller process that is SIGKILLed and restarted controllers
attach to the same head with ``address="auto"``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import trio

ray = pytest.importorskip("ray")  # the ``ray`` extra; CI installs it

from actors.process import find_marked  # noqa: E402
from runtime import (  # noqa: E402  # noqa: E402
    AgentSpec,
    ExitRule,
    Flow,
    JobFinished,
    JobNotFound,
    JobStarted,
    JobState,
    Step,
    event_to_dict,
    open_runtime,
)
from runtime.cluster import ClusterBusy, RayCluster, open_cluster_runtime  # noqa: E402
from runtime.cluster.steps import echo, noop  # noqa: E402
from runtime.cluster.testing import assert_cluster_no_leaks  # noqa: E402
from runtime.testing import assert_no_leaks  # noqa: E402

PY = sys.executable
FAKE = [PY, "-m", "actors.fake_agent", "--delay", "0.001"]
RAY_CLI = [PY, "-m", "ray.scripts.scripts"]
HERE = Path(__file__).parent
BOUND = 90
NAME = "attach-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def ray_head():
    """One Ray head for the module (``ray start --head``), this process its driver; then
    ``ray.shutdown()`` and ``ray stop``."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    subprocess.run([*RAY_CLI, "start", "--head", f"--port={free_port()}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        ray.init(address="auto", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True, timeout=120)


def marked(runtime_ids: set[str]) -> set[int]:
    return {p.pid for p in find_marked(lambda m: m.runtime_id in runtime_ids)}


async def wait_gone(pids: set[int], within: float) -> None:
    with trio.fail_after(within):
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            await trio.sleep(0.05)


async def started(handle) -> None:
    async for event in handle.events():
        if type(event).__name__ == "StepStarted":
            return


def complete_flow() -> Flow:
    return Flow("complete", [Step("agent", agent=AgentSpec(FAKE), prompt="hello {$job.n}"),
                             Step("tail", run=echo, inputs={"n": "$job.n"}, after=["agent"])])


def abandon_flow() -> Flow:
    return Flow("abandon", [Step("agent", agent=AgentSpec(FAKE), prompt="triage"),
                            Step("gate", run=noop, after=["agent"],
                                 exits=[ExitRule("drop", when="outputs.ok", action="abandon")]),
                            Step("never", run=noop, after=["gate"])])


def slow_flow(*extra: str) -> Flow:
    return Flow("slow", [Step("agent", agent=AgentSpec([*FAKE, "--slow", "--delay", "0.05", *extra]), prompt="work")])


async def test_fifty_jobs_over_two_hosts():
    # through the public entry point: open_runtime(cluster=...) dispatches to the cluster runtime
    # 12 slots, and the 16 slow jobs (n % 3 == 2) stream until they are cancelled, which happens only
    # after every spawn returned: at least 4 of them must be queued, however fast the others finish
    async with open_runtime(cluster=RayCluster(hosts=2, jobs_per_host=6), term_grace=0.5) as rt:
        ids = {h.runtime_id for h in rt.hosts}
        with trio.fail_after(BOUND):
            handles = []
            for n in range(50):
                flow = (complete_flow, abandon_flow, lambda: slow_flow())[n % 3]()
                handles.append((n, await rt.spawn(flow, {"n": n})))
            assert sum(n % 3 == 2 for n, _ in handles) == 16
            stats = await rt.stats_async()
            assert stats.pending_jobs >= 16 - 12 and stats.live_jobs <= 12, stats
            results = {}

            async def drive(n, handle):
                if n % 3 == 2:
                    await started(handle)
                    results[n] = await handle.cancel("stop")
                else:
                    results[n] = await handle.wait()

            async with trio.open_nursery() as nursery:
                for n, handle in handles:
                    nursery.start_soon(drive, n, handle)
        for n, res in results.items():
            if n % 3 == 0:
                assert res.state is JobState.COMPLETED, res
                assert res.outputs["tail"] == {"echo": {"n": n}}
                assert "text" in res.outputs["agent"]
            elif n % 3 == 1:
                assert (res.state, res.reason) == (JobState.ABANDONED, "drop"), res
                assert "never" not in res.outputs
            else:
                assert (res.state, res.reason) == (JobState.CANCELLED, "stop"), res
            assert await rt.result(res.job_id) == res
        assert len(results) == 50
        assert {h.host_pid for _, h in handles} == {h.pid for h in rt.hosts}  # all were placed
        assert marked(ids) == set()
        await assert_cluster_no_leaks(rt)


async def test_a_freed_slot_places_exactly_one_queued_job_in_spawn_order():
    # one slot: a short job, then three that stream until cancelled.  When the short one ends, the
    # first queued job (and only it) takes the slot; the other two stay PENDING on the controller
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=1), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            first = await rt.spawn(complete_flow(), {"n": 0})
            queued = [await rt.spawn(slow_flow()) for _ in range(3)]
            assert [h.state for h in queued] == [JobState.PENDING] * 3
            assert (await first.wait()).state is JobState.COMPLETED
            await started(queued[0])
            stats = await rt.stats_async()
            assert (stats.live_jobs, stats.pending_jobs) == (1, 2), stats
            assert [h.state for h in queued] == [JobState.RUNNING, JobState.PENDING, JobState.PENDING]
            # cancelling a queued job frees nothing on the host; cancelling the running one places the next
            assert (await queued[2].cancel("late")).state is JobState.CANCELLED
            assert (await queued[0].cancel("next")).state is JobState.CANCELLED
            await started(queued[1])
            assert (await rt.stats_async()).pending_jobs == 0
            assert (await queued[1].cancel("done")).state is JobState.CANCELLED
        await assert_cluster_no_leaks(rt)


async def test_events_in_order_and_reattach_from_seq():
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=4), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handle = await rt.spawn(slow_flow())
            live = []
            async for event in handle.events():
                live.append(event)
                if len(live) == 6:
                    break
            k = 3
            again = rt.get(handle.id)  # re-attach by id while the job runs
            tail = []
            async for event in again.events(from_seq=k):
                tail.append(event)
                if len(tail) == 3:
                    break
            assert [e.seq for e in tail] == [k, k + 1, k + 2]
            assert tail == live[k:6]
            await handle.cancel()
            full = [e async for e in handle.events()]
        assert [e.seq for e in full] == list(range(len(full)))
        assert isinstance(full[0], JobStarted) and isinstance(full[-1], JobFinished)
        assert full[:6] == live
        k = len(full) // 2
        assert [e async for e in handle.events(from_seq=k)] == full[k:]
        await assert_cluster_no_leaks(rt)


async def test_host_killed_mid_job():
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=4), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            doomed = await rt.spawn(slow_flow("--wrap", "1", "--setsid-child"))
            other = await rt.spawn(slow_flow())
            assert doomed.host_pid != other.host_pid
            rid = doomed.host_runtime_id
            while len(pids := marked({rid})) < 4:  # keeper, wrapper, agent, setsid child
                await trio.sleep(0.05)
            os.kill(doomed.host_pid, signal.SIGKILL)
            res = await doomed.wait()
            assert (res.state, res.reason) == (JobState.FAILED, "host_lost")
        await wait_gone(pids, 5)
        assert marked({rid}) == set()
        with trio.fail_after(BOUND):
            fresh = await rt.spawn(complete_flow(), {"n": 1})
            assert fresh.host_pid == other.host_pid
            assert (await fresh.wait()).state is JobState.COMPLETED
            # the last host fills up (4 slots) and one more job queues; then that host dies too:
            # its jobs fail host_lost, the queued one fails no_hosts (it would wait forever), and
            # spawn() says why it cannot run anything
            more = [await rt.spawn(slow_flow()) for _ in range(4)]
            assert [h.state for h in more] == [JobState.RUNNING] * 3 + [JobState.PENDING]
            await started(more[0])
            last_rid = other.host_runtime_id
            os.kill(other.host_pid, signal.SIGKILL)
            ends = [await h.wait() for h in [other, *more]]
            assert [(r.state, r.reason) for r in ends] == [(JobState.FAILED, "host_lost")] * 4 + [
                (JobState.FAILED, "no_hosts")]
            with pytest.raises(RuntimeError, match="every host"):
                await rt.spawn(complete_flow(), {"n": 2})
        with trio.fail_after(10):
            while marked({last_rid}):
                await trio.sleep(0.05)
        await assert_cluster_no_leaks(rt)


async def test_shutdown_with_live_jobs_leaves_nothing():
    with trio.fail_after(BOUND):
        async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
            handles = [await rt.spawn(slow_flow("--grandchild")) for _ in range(5)]  # one pending
            ids = {h.runtime_id for h in rt.hosts}
            for h in handles[:4]:
                await started(h)
            while len(pids := marked(ids)) < 8:  # 4 agents and their grandchildren
                await trio.sleep(0.05)
            actors = [h.actor for h in rt.hosts]
            host_pids = {h.pid for h in rt.hosts}
    assert {h.result.reason for h in handles} == {"shutdown"}
    assert {h.result.state for h in handles} == {JobState.CANCELLED}
    await wait_gone(pids | host_pids, 10)
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            await trio.to_thread.run_sync(lambda a=actor: ray.get(a.info.remote(), timeout=10))
    assert marked(ids) == set()


async def test_durable_jobs_on_hosts_record_into_the_sqlite_path(tmp_path):
    from runtime.store import SqliteStore

    db = tmp_path / "cluster.db"
    async with open_runtime(cluster=RayCluster(hosts=2, jobs_per_host=2), store=db, max_results=3,
                            term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handles = [await rt.spawn(complete_flow(), {"n": n}, record="durable") for n in range(5)]
            results = [await h.wait() for h in handles]
            assert {r.state for r in results} == {JobState.COMPLETED}, [(r.state, r.reason, r.error) for r in results]
            streamed = {h.id: [event_to_dict(e) async for e in h.events()] for h in handles}
            # the controller keeps the latest max_results results, like the embedded runtime
            kept = [await _kept_result(rt, h.id) for h in handles]
            assert sum(r is not None for r in kept) == 3, kept
            assert all(k in (None, r) for k, r in zip(kept, results, strict=True)), (kept, results)
            stats = await rt.stats_async()
            assert stats.results == 3, stats
            await assert_cluster_no_leaks(rt)
    async with SqliteStore(db) as store:  # both hosts wrote into the one file; nothing was lost
        for h in handles:
            rec = await store.get_job(h.id)
            assert rec is not None and rec.state == "completed", rec
            rows = await store.read_events(h.id)
            assert [r.seq for r in rows] == [e["seq"] for e in streamed[h.id]], (
                [(r.seq, r.type) for r in rows], [(e["seq"], e["type"]) for e in streamed[h.id]])
            assert rows[-1].type == "job_finished"


async def test_cluster_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="resume"):
        async with open_runtime(cluster=RayCluster(), resume=True):
            pass
    with pytest.raises(ValueError, match="max_running_jobs"):
        async with open_runtime(cluster=RayCluster(), max_running_jobs=3):
            pass
    from runtime.store import MemoryStore
    with pytest.raises(TypeError, match="store"):
        async with open_runtime(cluster=RayCluster(), store=MemoryStore()):
            pass
    with pytest.raises(ValueError, match="hosts"):
        RayCluster(hosts=0)
    async with open_runtime(cluster=RayCluster(hosts=1, jobs_per_host=1)) as rt:
        with pytest.raises(RuntimeError, match="named cluster"):
            rt.detach()


async def test_event_logs_are_bounded_and_say_what_they_dropped():
    from runtime import Lagged

    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=2, max_log_events=16),
                                    term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handle = await rt.spawn(slow_flow())  # streams ticks until cancelled
            async for event in handle.events():
                if getattr(event, "seq", 0) >= 40:
                    break
            replay = []
            async for item in handle.events(from_seq=0):  # the host holds only the latest ~16
                replay.append(item)
                if len(replay) == 3:
                    break
            assert isinstance(replay[0], Lagged) and 40 - 18 <= replay[0].n, replay
            assert [e.seq for e in replay[1:]] == [replay[0].n, replay[0].n + 1]
            await handle.cancel()
            after = [e async for e in handle.events(from_seq=0)]  # the controller's copy: bounded too
        assert isinstance(after[0], Lagged)
        kept = after[1:]
        assert 16 <= len(kept) <= 18 and kept[0].seq == after[0].n
        assert [e.seq for e in kept] == list(range(kept[0].seq, kept[0].seq + len(kept)))
        assert isinstance(kept[-1], JobFinished)
        await assert_cluster_no_leaks(rt)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def start_crashing_controller(gate: Path) -> tuple[trio.Process, dict]:
    """Run tests/cluster_controller.py until it reports its jobs; it is then killed by the caller."""
    proc = await trio.lowlevel.open_process([PY, str(HERE / "cluster_controller.py"), "auto", NAME, str(gate)],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
    buf = b""
    while b"READY " not in buf or not buf.split(b"READY ", 1)[1].count(b"\n"):
        chunk = await proc.stdout.receive_some()
        assert chunk, f"the controller exited before reporting: {buf[-2000:]!r}"
        buf += chunk
    line = buf.split(b"READY ", 1)[1].split(b"\n", 1)[0]
    return proc, json.loads(line)


async def test_new_controller_adopts_jobs_after_the_old_one_was_killed(ray_head, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # the gated job's shell blocks reading it until the test writes a line
    with trio.fail_after(BOUND):
        proc, report = await start_crashing_controller(gate)
        ids, seen = report["ids"], report["seen"]
        runtime_ids = set(report["runtime_ids"])
        # one controller at a time: while that one lives, attaching here is refused, naming it
        with pytest.raises(ClusterBusy) as busy:
            async with open_runtime(cluster=RayCluster(address="auto", name=NAME, hosts=2, attach_timeout=1)):
                pass
        assert busy.value.holder["pid"] == proc.pid and "held by the controller pid" in str(busy.value)
        os.killpg(proc.pid, signal.SIGKILL)  # the controller crashes: no cleanup of any kind runs
        await proc.wait()
        await proc.stdout.aclose()
    # the named hosts are detached actors: they and their jobs' processes outlive the controller
    assert all(alive(pid) for pid in report["hosts"])
    assert len(marked(runtime_ids)) >= 3  # the slow agent, its grandchild, the gated shell

    cluster = RayCluster(address="auto", name=NAME, hosts=2, jobs_per_host=4)
    async with open_runtime(cluster=cluster, term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            assert sorted(h.pid for h in rt.hosts) == sorted(report["hosts"])  # the same hosts
            assert {h.id for h in rt.jobs()} == set(ids.values())
            paused, slow, gated = rt.get(ids["paused"]), rt.get(ids["slow"]), rt.get(ids["gated"])
            assert paused.state is JobState.PAUSED
            assert slow.state is gated.state is JobState.RUNNING

            # the event stream resumes from a seq: exactly what the dead controller saw, then onward
            tail = []
            async for event in slow.events(from_seq=3):
                tail.append(event_to_dict(event))
                if len(tail) == 6:
                    break
            assert tail[:3] == seen[3:6]
            assert [e["seq"] for e in tail] == list(range(3, 9))

            await paused.resume({"ok": True})
            res = await paused.wait()
            assert res.state is JobState.COMPLETED, res
            assert res.outputs == {"check": {"echo": {"n": 3}}, "after": {"echo": {"ok": True}}}

            await trio.to_thread.run_sync(gate.write_text, "opened\n")
            res = await gated.wait()
            assert res.state is JobState.COMPLETED, res
            assert (await slow.cancel("stop")).state is JobState.CANCELLED
            full = [e async for e in slow.events()]
            assert [e.seq for e in full] == list(range(len(full)))
            assert [event_to_dict(e) for e in full[:6]] == seen
            await assert_cluster_no_leaks(rt)
            assert marked(runtime_ids) == set()

            # detach: a job this controller starts keeps running after it leaves
            later = await rt.spawn(Flow("later", [Step("agent", prompt="go", agent=AgentSpec(
                [PY, "-m", "actors.fake_agent", "--slow", "--delay", "0.05", "--grandchild"]))]))
            async for event in later.events():
                if type(event).__name__ == "StepStream":
                    break
            rt.detach()
    assert later.result is None
    assert all(alive(pid) for pid in report["hosts"])
    assert len(marked(runtime_ids)) >= 2  # the agent and its grandchild: the job still runs

    async with open_runtime(cluster=cluster, term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            assert [h.id for h in rt.jobs()] == [later.id]
            assert (await rt.get(later.id).cancel("done")).state is JobState.CANCELLED
            assert_no_leaks(rt)  # the embedded helper dispatches to the cluster check
    # leaving without detach stops the named hosts: no actor, no process remains
    with trio.fail_after(15):
        while any(alive(pid) for pid in report["hosts"]) or marked(runtime_ids):
            await trio.sleep(0.1)


async def _kept_result(rt, job_id):
    """The controller's kept result of a finished job; ``None`` once it was evicted (unknown)."""
    try:
        return await rt.result(job_id)
    except JobNotFound:
        return None
