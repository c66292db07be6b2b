"""The UI's ASGI app (Starlette): two pages, their JSON and server-sent-event feeds, three actions.

Routes (every one but ``/static`` needs the token, see :class:`TokenGate`):

- ``GET /``: the job list (``?state=``, ``?flow=``); ``GET /api/jobs`` the same as JSON;
  ``GET /api/jobs/changes``: an event-stream with one ``changed`` message each time jobs change
  state in a live runtime (it parks in between).
- ``GET /jobs/{id}``: one job -- its DAG, event log, inputs, outputs, error, processes;
  ``GET /api/jobs/{id}`` its record as JSON; ``GET /api/jobs/{id}/events?from=N``: its events as an
  event-stream (``id:`` is the seq, ``data:`` the event as JSON; a last ``end`` message);
  ``GET /api/jobs/{id}/processes``: its live processes.
- ``POST /api/jobs/{id}/resume`` (``{"payload": ...}``), ``/cancel`` and ``/abandon``
  (``{"reason": ...}``), through the control client: 200 with the job's state or result, 400 for
  a body that is not JSON, 404 for an unknown job, 409 when its state does not allow it.
"""

from __future__ import annotations

import datetime
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import jinja2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..core.control import result_to_wire
from ..core.states import JobNotFound, JobStateError
from .dag import NODE_H, NODE_W, layout
from .source import STATES, JobRow, JobSource

__all__ = ["COOKIE", "HEADER", "TokenGate", "make_app"]

HERE = Path(__file__).parent
COOKIE = "corral_token"
HEADER = "x-corral-token"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenGate:
    """Every request but ``/static`` carries the token, or gets 403.

    A page (GET) may carry it as ``?token=`` (the URL printed at start: the answer then sets it
    as a ``SameSite=Strict`` cookie) or in that cookie; an action (POST) only in the
    ``X-Corral-Token`` header, which a link or a form on another site cannot set.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        try:
            cookie = SimpleCookie(headers.get("cookie", ""))
        except CookieError:  # a malformed Cookie header carries no token
            cookie = SimpleCookie()
        cookie_token = cookie[COOKIE].value if COOKIE in cookie else ""
        if scope["method"] in ("GET", "HEAD"):
            given = [query, cookie_token]
        else:
            given = [headers.get(HEADER, "")]
        if not any(hmac.compare_digest(g, self.token) for g in given if g):
            await PlainTextResponse("403: this needs the token `corral ui` printed at start "
                                    "(open the URL it printed)", status_code=403)(scope, receive, send)
            return
        if query and hmac.compare_digest(query, self.token) and cookie_token != self.token:
            send = _with_cookie(send, self.token)
        await self.app(scope, receive, send)


def _with_cookie(send: Send, token: str) -> Send:
    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            value = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message["headers"] = [*message.get("headers", []), (b"set-cookie", value.encode())]
        await send(message)
    return sending


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=repr)
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    return env


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def _row_json(row: JobRow) -> dict[str, Any]:
    return {**attrs.asdict(row), "duration": row.duration}


def _sse(data: Any, *, event: str | None = None, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"] if event else []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, ensure_ascii=False, default=repr)}")
    return ("\n".join(lines) + "\n\n").encode()


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _Handlers:
    """The route handlers of one UI (its source, its templates, its token)."""

    def __init__(self, source: JobSource, token: str) -> None:
        self.source, self.token, self.env = source, token, _env()

    def page(self, name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(token=self.token, **context))

    @staticmethod
    def filters(request: Request) -> tuple[str | None, str | None]:
        state = request.query_params.get("state") or None
        flow = request.query_params.get("flow") or None
        return (state if state in STATES else None), flow

    async def jobs_page(self, request: Request) -> Response:
        state, flow = self.filters(request)
        rows, flows = await self.source.jobs(state=state, flow=flow)
        return self.page("jobs.html", rows=rows, flows=flows, states=STATES, state=state, flow=flow)

    async def jobs_json(self, request: Request) -> Response:
        state, flow = self.filters(request)
        rows, flows = await self.source.jobs(state=state, flow=flow)
        return JSONResponse({"jobs": [_row_json(r) for r in rows], "flows": flows})

    async def changes(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            yield b": watching\n\n"
            watched = False
            async for changed in self.source.client.watch():
                watched = True
                yield _sse(None if changed is None else sorted(changed), event="changed")
            if watched:
                yield _sse(None, event="changed")  # every runtime watched on is gone: re-read the list
            # nothing (left) to watch: park, not end -- an ended stream would have the browser
            # reconnect every few seconds; a reload watches the runtimes alive then
            await trio.sleep_forever()
        return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)

    async def job_page(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await self.source.job(job_id)
        if job is None:
            return self.page("missing.html", job_id=job_id)
        return self.page("job.html", job=job, row=job["row"], dag=layout(job["flow"]), node_w=NODE_W, node_h=NODE_H)

    async def job_json(self, request: Request) -> Response:
        job = await self.source.job(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": f"unknown job {request.path_params['job_id']}"}, status_code=404)
        return JSONResponse(_jsonable({**job, "row": _row_json(job["row"]), "flow": None}))

    async def job_events(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:  # a reconnecting EventSource says where it was: it goes on from the next event
            last = request.headers.get("last-event-id")
            start = int(last) + 1 if last else int(request.query_params.get("from", "0"))
        except ValueError:
            return JSONResponse({"error": "from (and Last-Event-ID) must be integers"}, status_code=400)
        if start < 0:
            return JSONResponse({"error": "from must be >= 0"}, status_code=400)

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for event in self.source.events(job_id, start):
                    yield _sse(event, event_id=event["seq"])
            except (JobNotFound, JobStateError) as exc:
                yield _sse(str(exc), event="unavailable")
            yield _sse(None, event="end")
        return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)

    async def job_processes(self, request: Request) -> Response:
        procs = await self.source.processes(request.path_params["job_id"])
        return JSONResponse({"processes": [attrs.asdict(p) for p in procs]})

    async def act(self, request: Request) -> Response:
        job_id, action = request.path_params["job_id"], request.path_params["action"]
        if action not in ("resume", "cancel", "abandon"):
            return JSONResponse({"error": f"unknown action {action!r}: resume, cancel or abandon"}, status_code=404)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError as exc:
            return JSONResponse({"error": f"the request body is not JSON: {exc}"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the request body must be a JSON object"}, status_code=400)
        try:
            return await self._act(job_id, action, body)
        except JobNotFound:
            return JSONResponse({"error": f"unknown job {job_id}"}, status_code=404)
        except JobStateError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)

    async def _act(self, job_id: str, action: str, body: dict[str, Any]) -> Response:
        client = self.source.client
        if action == "resume":
            await client.resume(job_id, body.get("payload"))
            return JSONResponse({"state": "running"})
        reason = body.get("reason") or ("cancelled" if action == "cancel" else "abandoned")
        if not isinstance(reason, str):
            return JSONResponse({"error": "reason must be a string"}, status_code=400)
        end = client.cancel if action == "cancel" else client.abandon
        return JSONResponse(_jsonable(result_to_wire(await end(job_id, reason))))


def make_app(source: JobSource, token: str) -> ASGIApp:
    """The UI for ``source``, behind a :class:`TokenGate` of ``token``."""
    h = _Handlers(source, token)
    routes = [
        Route("/", h.jobs_page),
        Route("/api/jobs", h.jobs_json),
        Route("/api/jobs/changes", h.changes),
        Route("/jobs/{job_id}", h.job_page),
        Route("/api/jobs/{job_id}", h.job_json),
        Route("/api/jobs/{job_id}/events", h.job_events),
        Route("/api/jobs/{job_id}/processes", h.job_processes),
        Route("/api/jobs/{job_id}/{action:str}", h.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return TokenGate(Starlette(routes=routes), token)


def _jsonable(value: Any) -> Any:
    """``value`` made JSON-safe (non-finite floats and other objects as text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
