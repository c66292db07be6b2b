"""The browser UI (``runtime.ui``): page load with 10,000 stored jobs, and how long an agent's delta
takes from the step to a reader of the job page's event stream.

    python benchmarks/ui.py [--json] [--quick] [--repeats N] [--jobs N] [--deltas N]

Figures (median of the repeats, with min and max):

- ms to load the job list (``GET /``: the newest 200 rows rendered to HTML) from a SQLite store
  holding ``--jobs`` finished jobs (default 10,000), over HTTP on loopback, a new connection each.
  Floor: the store's own ``list_jobs(limit=200)``, the data the page shows.
- ms for the same list as JSON (``GET /api/jobs``, what the page re-reads when jobs change), and
  for the list filtered by flow (which reads every stored job).  Same floor.
- ms from a step's ``delta`` to the same delta arriving as a server-sent event on an open
  ``/api/jobs/{id}/events`` stream (the runtime serves its UI with ``rt.serve_ui()``; the reader
  is a socket in the same process; the job records to memory, so the stream starts at seq 0).
  ``per_token`` deltas, one every 20 ms, so each is its own event.  Floor: the same delta arriving through ``job.events()`` in the same process.

``--quick``: 500 jobs, 20 deltas.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, row, skip, summary

try:
    from runtime.ui import JobSource, serve
except ImportError as exc:  # the ui extra
    skip(f"the ui extra is not installed ({exc.name})")

from runtime import Flow, Step, StepStream, open_client, open_runtime
from runtime.store import JobRecord, SqliteStore

FLOOR_LIST = "store.list_jobs(limit=200)"
FLOOR_EVENTS = "the same delta through job.events() in-process"


async def _get(host: str, port: int, path: str) -> tuple[int, int]:
    """One GET over a new connection: (status, body bytes)."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), len(body)


async def _fill(path: Path, n: int) -> None:
    async with SqliteStore(path) as store:
        now = time.time() - n
        for i in range(n):
            await store.put_job(JobRecord(
                job_id=f"job{i:06d}", flow_name=f"flow{i % 7}", flow={"name": f"flow{i % 7}", "steps": [{"name": "a"}]},
                inputs={"n": i}, state="completed" if i % 5 else "failed", reason=None if i % 5 else "step_failed:a",
                outputs={"a": {"n": i}}, record="durable", created_at=now + i, updated_at=now + i + 0.5,
                finished_at=now + i + 0.5))


async def list_figures(n: int, repeats: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ui.db"
        await _fill(db, n)
        samples: dict[str, list[float]] = {"floor": [], "page": [], "json": [], "flow": []}
        async with open_client(store=db) as client, trio.open_nursery() as nursery:
            url = await nursery.start(serve, JobSource(client), 0)
            host_port, token = url.split("//", 1)[1].split("/?token=")
            host, port = host_port.split(":")
            for _ in range(repeats + 1):  # the first round warms the caches
                t0 = time.perf_counter()
                rows = await client.store.list_jobs(limit=200)
                samples["floor"].append((time.perf_counter() - t0) * 1e3)
                assert len(rows) == min(200, n)
                for key, path in (("page", "/"), ("json", "/api/jobs"), ("flow", "/?flow=flow3")):
                    t0 = time.perf_counter()
                    status, size = await _get(host, int(port), f"{path}{'&' if '?' in path else '?'}token={token}")
                    samples[key].append((time.perf_counter() - t0) * 1e3)
                    assert status == 200 and size > 1000, (path, status, size)
            nursery.cancel_scope.cancel()
    floor = summary(samples["floor"][1:])
    return [
        row(f"ui: job list page (GET /, 200 newest of {n:,} stored jobs)", summary(samples["page"][1:]), "ms",
            floor, FLOOR_LIST, repeats=repeats),
        row(f"ui: job list as JSON (GET /api/jobs, {n:,} stored jobs)", summary(samples["json"][1:]), "ms",
            floor, FLOOR_LIST, repeats=repeats),
        row(f"ui: job list filtered by flow (reads all {n:,} stored jobs)", summary(samples["flow"][1:]), "ms",
            floor, FLOOR_LIST, repeats=repeats),
    ]


async def _streamer(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    async with ctx.stream(mode="per_token") as stream:
        for _ in range(inputs["deltas"]):
            await trio.sleep(0.02)
            await stream.delta(f"{time.time():.6f} ")
    return {}


async def _sse_latencies(host: str, port: int, path: str, deltas: int) -> list[float]:
    stream = await trio.open_tcp_stream(host, port)
    out: list[float] = []
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buffer = ""
        while len(out) < deltas:
            chunk = await stream.receive_some()
            if not chunk:
                break
            now = time.time()
            buffer += chunk.decode()
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                if "event: end" in block:  # the job's last event came: the stream is done
                    return out
                data = next((line[6:] for line in block.split("\n") if line.startswith("data: ")), None)
                event = json.loads(data) if data else None
                update = event.get("update") if isinstance(event, dict) else None
                if isinstance(update, dict) and update.get("type") == "Delta":
                    out.append((now - float(update["delta"]["text"])) * 1e3)
    return out


async def stream_figures(deltas: int, repeats: int) -> list[dict[str, Any]]:
    sse: list[float] = []
    local: list[float] = []
    flow = Flow("stream", [Step("s", run=_streamer, inputs={"deltas": "$job.deltas"})])
    with tempfile.TemporaryDirectory() as tmp:
        async with open_runtime(store=Path(tmp) / "s.db") as rt:
            url = await rt.serve_ui()
            host_port, token = url.split("//", 1)[1].split("/?token=")
            host, port = host_port.split(":")
            for _ in range(repeats):
                job = await rt.spawn(flow, {"deltas": deltas}, record="memory")  # the page's stream replays from seq 0
                events = job.events()
                async with trio.open_nursery() as nursery:
                    async def read_sse(job_id: str = job.id) -> None:
                        sse.extend(await _sse_latencies(host, int(port), f"/api/jobs/{job_id}/events?token={token}",
                                                        deltas))
                    nursery.start_soon(read_sse)
                    async for event in events:
                        if isinstance(event, StepStream) and type(event.update).__name__ == "Delta":
                            local.append((time.time() - float(event.update.delta.text)) * 1e3)
                await job.wait()
    return [row("ui: delta to the job page's event stream (SSE over loopback)", summary(sse), "ms",
                summary(local), FLOOR_EVENTS, repeats=repeats, note=f"{len(sse)} deltas")]


def main() -> None:
    def add(p: Any) -> None:
        p.add_argument("--jobs", type=int, default=None, help="stored jobs (default 10000)")
        p.add_argument("--deltas", type=int, default=None, help="deltas per streaming job (default 100)")

    args = options(__doc__, add)
    quiet_logs()
    jobs = args.jobs or (500 if args.quick else 10_000)
    deltas = args.deltas or (20 if args.quick else 100)
    rows = trio.run(list_figures, jobs, args.repeats) + trio.run(stream_figures, deltas, args.repeats)
    emit(rows, args.json)


if __name__ == "__main__":
    main()
