"""The control endpoint: resume round trips from another process, and wakeups of an idle endpoint.

    python benchmarks/control.py [--json] [--quick] [--repeats N] [--jobs N] [--idle-jobs N]

Figures (median of the repeats, with min and max; real processes, real clock):

- ``client.resume`` round trip: a worker (a separate process: this file run with ``--worker``)
  opens ``open_runtime(store=path)`` and holds durable jobs PAUSED on an escalate exit rule.
  From this process, with one ``open_client(store=path)``, each ``await client.resume(job_id,
  payload)`` is timed.  The endpoint replies to ``resume`` only once the job reads RUNNING, so
  the round trip is the call: the client's store look-up of the job's owner (its record and the
  live leases) and a new connection to the owner's socket per request (that is how the client
  works), the request, the reply.  Untimed between requests: the job's end is awaited (its
  record reads completed in the store) and the worker gets 2 ms to settle; 5 warm-up rounds first.
  Floor: a bare trio Unix-socket JSON-line echo, also a new connection per request: the client
  connects, sends a JSON-RPC ``resume`` line of the same size, reads the echoed line, closes; the
  echo server runs in the same worker process.  Ratio = value / floor.
- raw JSON-RPC ``resume`` line over a new connection to the worker's endpoint (no store look-up,
  no client): the same request as above without the client's routing.  Same floor.
- scheduler wakeups per second of a runtime on a SQLite store with its control endpoint open
  (having served one request) and K jobs paused (durable, stored): expected 0.

The worker leaves (cancelling what it still holds) when its stdin closes; it is waited for, and
killed by its pid only if it does not exit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, idle_wakeups_per_s, options, quiet_logs, row, summary

from runtime import ExitRule, Flow, JobState, Step, open_client, open_runtime
from runtime.store import SqliteStore

PAYLOAD = {"approved": True}
WARMUP = 5  # untimed round trips of each kind before the timed ones
SCRIPT = str(Path(__file__).resolve())  # run again with --worker as the worker
SETTLE = 0.002  # seconds between requests, untimed: the worker's own work after an answer is done
WORKER_GRACE = 30.0  # seconds the worker gets to leave after its stdin closes


async def noop(ctx: Any, inputs: Any) -> None:
    return None


def paused_flow() -> Flow:
    """Step ``a`` escalates (the job pauses); ``b`` runs once it is resumed."""
    return Flow("ask", [Step("a", run=noop, exits=[ExitRule("ask", action="escalate")]),
                        Step("b", run=noop, after=["a"])])


async def spawn_paused(rt: Any, n: int) -> list[Any]:
    """``n`` durable jobs, PAUSED, with their pause committed to the store."""
    jobs = [await rt.spawn(paused_flow(), record="durable") for _ in range(n)]
    for job in jobs:
        while job.state is not JobState.PAUSED:  # noqa: ASYNC110 (a benchmark's setup)
            await trio.sleep(0.01)
    path = rt.store.path
    async with SqliteStore(path) as st:  # another connection sees only what is committed
        for job in jobs:
            while (rec := await st.get_job(job.id)) is None or rec.state != "paused":  # noqa: ASYNC110
                await trio.sleep(0.01)
    return jobs


def resume_line(job_id: str, request_id: int = 1) -> bytes:
    request = {"jsonrpc": "2.0", "id": request_id, "method": "resume",
               "params": {"job_id": job_id, "payload": PAYLOAD}}
    return json.dumps(request, separators=(",", ":")).encode() + b"\n"


async def read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    """One line from ``stream`` (``buffer`` keeps what came after it); ``b""`` at EOF."""
    while (end := buffer.find(b"\n")) < 0:
        data = await stream.receive_some(65536)
        if not data:
            return b""
        buffer += data
    line = bytes(buffer[:end])
    del buffer[:end + 1]
    return line


# -- the worker (another process) -----------------------------------------------------------------


async def echo_connection(stream: trio.SocketStream) -> None:
    buffer = bytearray()
    async with stream:
        while line := await read_line(stream, buffer):
            await stream.send_all(line + b"\n")


async def worker(store: Path, echo_path: Path, n: int) -> None:
    """Hold ``n`` paused durable jobs and serve a JSON-line echo; print one line; leave at stdin EOF."""
    async with open_runtime(store=store, max_results=n + 1) as rt, trio.open_nursery() as nursery:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # as the control server's
        await sock.bind(os.fspath(echo_path))
        sock.listen(64)
        nursery.start_soon(trio.serve_listeners, echo_connection, [trio.SocketListener(sock)])
        jobs = await spawn_paused(rt, n)
        assert rt.control_path is not None, "no control endpoint"
        ready = {"jobs": [job.id for job in jobs], "control": os.fspath(rt.control_path),
                 "echo": os.fspath(echo_path), "pid": os.getpid()}
        print(json.dumps(ready), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        async with stdin:
            while await stdin.receive_some(4096):
                pass
        nursery.cancel_scope.cancel()


# -- the benchmark --------------------------------------------------------------------------------


async def echo_round_trip(path: str, line: bytes) -> float:
    t0 = time.perf_counter()
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(line)
        reply = await read_line(stream, bytearray())
    elapsed = time.perf_counter() - t0
    if reply + b"\n" != line:
        raise RuntimeError(f"the echo server answered {reply!r}")
    return elapsed


async def raw_resume(path: str, job_id: str) -> float:
    t0 = time.perf_counter()
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(resume_line(job_id))
        reply = await read_line(stream, bytearray())
    elapsed = time.perf_counter() - t0
    answer = json.loads(reply)
    if answer.get("result") != {"state": "running"}:
        raise RuntimeError(f"resume {job_id}: {answer}")
    return elapsed


async def round_trips(store: Path, ready: dict[str, Any], n: int, repeats: int) -> dict[str, list[float]]:
    """µs per round trip (the median of each repeat's ``n``) of the client, the raw line, the echo."""
    jobs: list[str] = list(ready["jobs"])
    out: dict[str, list[float]] = {"client": [], "raw": [], "echo": []}
    async with open_client(store=store) as client:

        async def via_client(job_id: str) -> float:
            t0 = time.perf_counter()
            await client.resume(job_id, PAYLOAD)
            elapsed = time.perf_counter() - t0
            await completed(job_id)
            return elapsed

        async def via_line(job_id: str) -> float:
            elapsed = await raw_resume(ready["control"], job_id)
            await completed(job_id)
            return elapsed

        async def completed(job_id: str) -> None:
            # untimed: the job's end committed, so the worker is quiet before the next request.
            # (Read from the store: client.result() can race the job's end and raise "has ended".)
            while (rec := await client.store.get_job(job_id)) is None or rec.state != "completed":
                if rec is not None and rec.state in ("failed", "cancelled", "abandoned"):
                    raise RuntimeError(f"job {job_id} ended {rec.state}")
                await trio.sleep(0.001)
            await trio.sleep(SETTLE)

        async def echo(job_id: str) -> float:
            elapsed = await echo_round_trip(ready["echo"], resume_line(job_id))
            await trio.sleep(SETTLE)
            return elapsed

        for index, reps in enumerate((WARMUP, *([n] * repeats))):  # the first pass is a warm-up
            times: dict[str, list[float]] = {k: [] for k in out}
            for _ in range(reps):
                for kind, fn in (("echo", echo), ("client", via_client), ("raw", via_line)):
                    job_id = jobs[-1] if kind == "echo" else jobs.pop()
                    times[kind].append(await fn(job_id))
            if index:
                for kind, values in times.items():
                    out[kind].append(summary(values)[0] * 1e6)
    return out


async def ready_line(proc: trio.Process) -> dict[str, Any]:
    """The worker's one line, once it holds its jobs."""
    assert proc.stdout is not None
    line = await read_line(proc.stdout, bytearray())
    if not line:
        await proc.wait()
        raise RuntimeError(f"the worker exited ({proc.returncode}) before it was ready")
    ready: dict[str, Any] = json.loads(line)
    return ready


async def stop_worker(proc: trio.Process) -> str | None:
    """Close its stdin (it leaves), wait for it; kill it by its pid only if it does not exit.

    What went wrong, or ``None``."""
    with trio.CancelScope(shield=True):
        if proc.stdin is not None:
            await proc.stdin.aclose()
        with trio.move_on_after(WORKER_GRACE):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
            return f"the worker (pid {proc.pid}) did not leave at stdin EOF; killed"
    return None if proc.returncode == 0 else f"the worker exited {proc.returncode}"


async def measure_round_trips(tmp: Path, n: int, repeats: int) -> dict[str, list[float]]:
    store = tmp / "worker.db"
    jobs = 2 * (WARMUP + n * repeats)  # the client's and the raw line's
    command = [sys.executable, SCRIPT, "--worker", str(store), "--echo", str(tmp / "echo.sock"),
               "--jobs", str(jobs)]
    proc = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        with trio.fail_after(600):
            ready = await ready_line(proc)
        trips = await round_trips(store, ready, n, repeats)
    finally:
        problem = await stop_worker(proc)
    if problem is not None:
        raise RuntimeError(problem)
    return trips


async def idle_endpoint_wakeups(tmp: Path, k: int, repeats: int, window: float) -> list[float]:
    """Wakeups/s of a runtime on SQLite with its endpoint open (one request served), ``k`` paused."""
    async with open_runtime(store=tmp / "idle.db", max_results=k + 1) as rt:
        jobs = await spawn_paused(rt, k)
        control = rt.control_path
        if control is None or not control.is_socket():
            raise RuntimeError("the control endpoint is not open")
        stream = await trio.open_unix_socket(os.fspath(control))  # one request, then idle
        async with stream:
            await stream.send_all(b'{"jsonrpc":"2.0","id":1,"method":"stats","params":{}}\n')
            answer = json.loads(await read_line(stream, bytearray()))
        if answer.get("result", {}).get("pid") != os.getpid():
            raise RuntimeError(f"stats: {answer}")
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        paused = sum(job.state is JobState.PAUSED for job in jobs)
        if paused != k:
            raise RuntimeError(f"expected {k} paused jobs, got {paused}")
        return await idle_wakeups_per_s(repeats, window)


async def _main(n: int, k: int, repeats: int, window: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="corral-control-") as name:
        tmp = Path(name)
        trips = await measure_round_trips(tmp, n, repeats)
        idle = await idle_endpoint_wakeups(tmp, k, repeats, window)
    floor = summary(trips["echo"])
    floor_name = "bare trio Unix-socket JSON-line echo, new connection per request (another process)"
    return [
        row(f"control: client.resume round trip to another process's paused job (open_client once; "
            f"store look-up + new connection per request; median of {n})", summary(trips["client"]),
            "µs", floor, floor_name, repeats=repeats),
        row(f"control: raw JSON-RPC resume line, new connection per request, no store look-up "
            f"(median of {n})", summary(trips["raw"]), "µs", floor, floor_name, repeats=repeats),
        row(f"control: scheduler wakeups/s, SQLite runtime with control endpoint open and {k} "
            "jobs paused", summary(idle), "wakeups/s", repeats=repeats, note="expected 0"),
    ]


def main(argv: list[str] | None = None) -> None:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--jobs", type=int, default=None,
                       help="resumes per repeat (default 200); with --worker: jobs to hold")
        p.add_argument("--idle-jobs", type=int, default=None, help="paused jobs while idle (default 1000)")
        p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
        p.add_argument("--echo", type=Path, default=None, help=argparse.SUPPRESS)

    args = options(__doc__, add, argv)
    quiet_logs()
    if args.worker is not None:
        trio.run(worker, args.worker, args.echo, args.jobs)
        return
    n = args.jobs or (20 if args.quick else 200)
    k = args.idle_jobs or (100 if args.quick else 1_000)
    window = 0.3 if args.quick else 1.0
    emit(trio.run(_main, n, k, args.repeats, window), args.json)


if __name__ == "__main__":
    main()
