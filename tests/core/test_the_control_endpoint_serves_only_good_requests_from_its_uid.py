"""A runtime with a SQLite store serves control requests on a private Unix socket named in its
lease: good requests steer jobs by id, bad ones get a JSON-RPC error and never disturb a job, a
peer of another uid is refused, an idle endpoint schedules nothing, and the socket is gone when
the runtime closes."""

from __future__ import annotations

import json
import os
import stat

import trio
import trio.testing
from core_support import ok

import runtime.core.control as control_mod
from runtime import (
    ExitRule,
    Flow,
    JobNotFound,
    JobPaused,
    JobState,
    JobStateError,
    Step,
    open_client,
    open_runtime,
)
from runtime.testing import WakeupCounter


def paused_flow() -> Flow:
    return Flow("hold", [Step("a", run=ok, exits=[ExitRule("ask", action="escalate")]),
                         Step("b", run=ok, inputs={"x": "$resume.x"})])


async def _paused(rt, n: int = 1, **kw):
    jobs = []
    for _ in range(n):
        job = await rt.spawn(paused_flow(), **kw)
        async for event in job.events():
            if isinstance(event, JobPaused):
                break
        jobs.append(job)
    assert all(j.state is JobState.PAUSED for j in jobs)
    return jobs


async def _ask(path, *lines: bytes) -> list[dict]:
    """Send raw lines on a fresh connection; read the answers until the server closes or has
    answered once per line."""
    stream = await trio.open_unix_socket(os.fspath(path))
    async with stream:
        for line in lines:
            await stream.send_all(line)
        answers: list[dict] = []
        buffer = b""
        while len(answers) < len(lines):
            data = await stream.receive_some()
            if not data:
                break
            buffer += data
            while b"\n" in buffer:
                one, buffer = buffer.split(b"\n", 1)
                answers.append(json.loads(one))
        return answers


async def test_the_socket_is_private_named_in_the_lease_and_gone_after_close(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        path = rt.control_path
        assert path is not None and path.parent == tmp_path / "s.db.control"
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        leases = await rt.store.list_leases()
        assert [lease.control for lease in leases] == [os.fspath(path)]
    assert not path.exists() and not path.parent.exists()


async def test_an_in_memory_runtime_serves_nothing():
    async with open_runtime() as rt:
        assert rt.control_path is None


async def test_client_resumes_cancels_and_names_unknown_jobs(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        first, second = await _paused(rt, 2, record="durable")
        async with open_client(store=db) as client:
            await client.resume(first.id, {"x": 7})
            result = await client.result(first.id)
            assert result.state is JobState.COMPLETED and result.outputs["b"]["x"] == 7
            again = await client.result(first.id)  # it has ended: its owner answers with what it kept
            assert (again.state, again.outputs) == (result.state, result.outputs)
            try:
                await client.resume(first.id, {"x": 8})
                raise AssertionError("resumed a completed job")
            except JobStateError as exc:
                assert first.id in str(exc)
            cancelled = await client.cancel(second.id, "not needed")
            assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "not needed")
            try:
                await client.cancel("no-such-job")
                raise AssertionError("cancelled an unknown job")
            except JobNotFound as exc:
                assert "no-such-job" in str(exc)
            try:
                await client.result("no-such-job")
                raise AssertionError("a result for an unknown job")
            except JobNotFound as exc:
                assert "no-such-job" in str(exc)


async def test_events_stream_from_a_seq_until_the_job_ends(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        (job,) = await _paused(rt, record="durable")
        async with open_client(store=db) as client, trio.open_nursery() as nursery:
            seen = []

            async def watch():
                async for event in client.events(job.id, from_seq=1):
                    seen.append(event)

            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            await client.resume(job.id, {"x": 1})
        assert seen[0].seq == 1
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].type == "job_finished" and seen[-1].state == "completed"


async def test_bad_requests_get_errors_and_never_disturb_a_job(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        (job,) = await _paused(rt, record="durable")
        path = rt.control_path
        answers = await _ask(
            path,
            b"{not json\n",
            b'[{"jsonrpc": "2.0", "id": 1, "method": "stats"}]\n',
            b'{"jsonrpc": "2.0", "id": 2, "method": "format_disk"}\n',
            b'{"jsonrpc": "2.0", "id": 3, "method": "resume", "params": {"job_id": 5}}\n',
            b'{"jsonrpc": "2.0", "id": 4, "method": "resume", "params": {"job_id": "nope"}}\n',
            b'{"jsonrpc": "2.0", "id": 5, "method": "cancel", "params": {"job_id": "%s", "reason": 1}}\n'
            % job.id.encode(),
        )
        codes = sorted((a["id"] if a["id"] is not None else 0, a["error"]["code"]) for a in answers)
        assert codes == [(0, -32700), (0, -32600), (2, -32601), (3, -32602), (4, -32004), (5, -32602)]
        by_id = {a["id"]: a["error"]["message"] for a in answers if a["id"] is not None}
        assert "format_disk" in by_id[2] and "job_id" in by_id[3] and "nope" in by_id[4]
        huge = b'{"jsonrpc": "2.0", "id": 6, "method": "stats", "params": {"x": "' + b"a" * (1 << 17) + b'"}}\n'
        (too_big,) = await _ask(path, huge)
        assert too_big["error"]["code"] == -32600 and "larger than" in too_big["error"]["message"]
        assert job.state is JobState.PAUSED  # none of it reached the job
        (stats,) = await _ask(path, b'{"jsonrpc": "2.0", "id": 7, "method": "stats"}\n')
        assert stats["result"]["pid"] == os.getpid() and stats["result"]["live_jobs"] == 1
        await job.resume({"x": 2})
        assert (await job.wait()).state is JobState.COMPLETED


async def test_a_peer_of_another_uid_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(control_mod, "peer_uid", lambda sock: os.getuid() + 1)
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        (job,) = await _paused(rt, record="durable")
        request = b'{"jsonrpc": "2.0", "id": 1, "method": "resume", "params": {"job_id": "%s"}}\n' % job.id.encode()
        (answer,) = await _ask(rt.control_path, request)
        assert answer["error"]["code"] == -32600 and "refused" in answer["error"]["message"]
        assert job.state is JobState.PAUSED


async def test_ten_thousand_idle_jobs_with_the_endpoint_open_cause_no_wakeups(tmp_path, autojump_clock,
                                                                               wakeups: WakeupCounter):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        jobs = await _paused(rt, 10_000)
        assert rt.control_path is not None
        wakeups.reset()
        await trio.sleep(3600)
        assert wakeups.count == 0
        assert len(jobs) == 10_000
