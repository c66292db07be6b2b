"""A restarted controller adopts the jobs of a named cluster: real `ray start --head`, a controller
process killed with SIGKILL, a new controller attaching with ``address="auto"``."""

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

from actors.process import live_marked  # noqa: E402
from runtime import AgentSpec, Flow, JobState, Step, open_runtime  # noqa: E402
from runtime.cluster import RayCluster  # noqa: E402
from runtime.cluster.testing import assert_cluster_no_leaks  # noqa: E402
from runtime.events import event_to_dict  # noqa: E402
from runtime.testing import assert_no_leaks  # noqa: E402

PY = sys.executable
RAY_CLI = [PY, "-m", "ray.scripts.scripts"]
HERE = Path(__file__).parent
BOUND = 120
NAME = "attach-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head started the way an operator does (``ray start --head``), stopped afterwards."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    subprocess.run([*RAY_CLI, "start", "--head", f"--port={free_port()}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=120)
    yield
    subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True, timeout=120)


def marked(runtime_ids: set[str]) -> set[int]:
    return {p.pid for p in live_marked(lambda m: m.runtime_id in runtime_ids)}


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
