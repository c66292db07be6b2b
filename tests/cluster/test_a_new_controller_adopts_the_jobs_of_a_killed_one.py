"""Named clusters survive their controller: a controller process SIGKILLed mid-work leaves its
named hosts and their jobs running, a new controller (``address="auto"``) adopts them, one
controller holds the name at a time, and ``detach()`` hands the jobs on to a third."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from runtime import AgentSpec, Flow, JobState, Step, StepStream, event_to_dict
from runtime.cluster import ClusterBusy, RayCluster, open_cluster_runtime
from runtime.cluster.testing import assert_cluster_no_leaks
from runtime.testing import assert_no_leaks

from .support import BOUND, PY, alive, marked

pytestmark = pytest.mark.usefixtures("ray_head")

CONTROLLER = Path(__file__).with_name("controller_process.py")
NAME = "attach-test"


async def start_crashing_controller(gate: Path) -> tuple[trio.Process, dict]:
    """Run controller_process.py until it reports its jobs; it is then killed by the caller."""
    proc = await trio.lowlevel.open_process([PY, str(CONTROLLER), "auto", NAME, str(gate)],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
    buf = b""
    while b"READY " not in buf or not buf.split(b"READY ", 1)[1].count(b"\n"):
        chunk = await proc.stdout.receive_some()
        assert chunk, f"the controller exited before reporting: {buf[-2000:]!r}"
        buf += chunk
    line = buf.split(b"READY ", 1)[1].split(b"\n", 1)[0]
    return proc, json.loads(line)


async def test_new_controller_adopts_jobs_after_the_old_one_was_killed(tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # the gated job's shell blocks reading it until the test writes a line
    with trio.fail_after(BOUND):
        proc, report = await start_crashing_controller(gate)
        ids, seen = report["ids"], report["seen"]
        runtime_ids = set(report["runtime_ids"])
        # one controller at a time: while that one lives, attaching here is refused, naming it
        with pytest.raises(ClusterBusy) as busy:
            async with open_cluster_runtime(RayCluster(address="auto", name=NAME, hosts=2, attach_timeout=1)):
                pass
        assert busy.value.holder["pid"] == proc.pid and "held by the controller pid" in str(busy.value)
        os.killpg(proc.pid, signal.SIGKILL)  # the controller crashes: no cleanup of any kind runs
        await proc.wait()
        await proc.stdout.aclose()
    # the named hosts are detached actors: they and their jobs' processes outlive the controller
    assert all(alive(pid) for pid in report["hosts"])
    assert len(marked(runtime_ids)) >= 3  # the slow agent, its grandchild, the gated shell

    cluster = RayCluster(address="auto", name=NAME, hosts=2, jobs_per_host=4)
    async with open_cluster_runtime(cluster, term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            assert sorted(h.pid for h in rt.hosts) == sorted(report["hosts"])  # the same hosts
            assert {h.id for h in rt.jobs()} == set(ids.values())
            paused, slow, gated = rt.get(ids["paused"]), rt.get(ids["slow"]), rt.get(ids["gated"])
            assert paused.state is JobState.PAUSED
            assert slow.state is gated.state is JobState.RUNNING

            # the event stream resumes from a seq: exactly what the dead controller saw, then onward
            tail = []
            async for event in slow.events_since(3):
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
            full = [e async for e in slow.events(replay=True)]
            assert [e.seq for e in full] == list(range(len(full)))
            assert [event_to_dict(e) for e in full[:6]] == seen
            await assert_cluster_no_leaks(rt)
            assert marked(runtime_ids) == set()

            # detach: a job this controller starts keeps running after it leaves
            later = await rt.spawn(Flow("later", [Step("agent", prompt="go", agent=AgentSpec(
                [PY, "-m", "actors.fake_agent", "--slow", "--delay", "0.05", "--grandchild"]))]))
            async for event in later.events():
                if isinstance(event, StepStream):
                    break
            rt.detach()
    assert later.result is None
    assert all(alive(pid) for pid in report["hosts"])
    assert len(marked(runtime_ids)) >= 2  # the agent and its grandchild: the job still runs

    async with open_cluster_runtime(cluster, term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            assert [h.id for h in rt.jobs()] == [later.id]
            assert (await rt.get(later.id).cancel("done")).state is JobState.CANCELLED
            assert_no_leaks(rt)  # the embedded helper dispatches to the cluster check
    # leaving without detach stops the named hosts: no actor, no process remains (polling the
    # OS process table until they died)
    with trio.fail_after(15):
        while any(alive(pid) for pid in report["hosts"]) or marked(runtime_ids):  # noqa: ASYNC110
            await trio.sleep(0.1)
