"""Serving the UI: Hypercorn's trio worker on loopback, with a fresh random token.

:func:`serve` runs until cancelled and reports the page's URL (with its token) as started; it
logs through corral's loggers, never to the host program's stdout.  :func:`serve_runtime` is
what ``rt.serve_ui()`` starts in the runtime's service nursery.
"""

from __future__ import annotations

import functools
import logging
import secrets
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from actors.log import get_logger

from ..client import ControlClient
from ..core.runtime import Runtime
from .app import make_app
from .source import JobSource

__all__ = ["HOST", "serve", "serve_runtime"]

#: The only interface the UI listens on.
HOST = "127.0.0.1"

_log = get_logger("corral.ui")


def _config(port: int) -> Config:
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("corral.ui.hypercorn")  # the app's logging decides, as for corral's
    config.graceful_timeout = 0.5  # open event streams are cut, not awaited
    config.include_server_header = False
    return config


async def serve(source: JobSource, port: int = 0, *, token: str | None = None,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the UI of ``source`` on ``127.0.0.1:port`` (0: a free port) until cancelled; reports
    ``http://127.0.0.1:PORT/?token=TOKEN`` as started."""
    token = token or secrets.token_urlsafe(24)
    app: Any = make_app(source, token)  # an ASGI 3 callable (hypercorn's annotation is narrower)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(functools.partial(hypercorn_serve, app, _config(port), mode="asgi"))
        url = f"{binds[0]}/?token={token}"
        _log.info("ui_serving", url=binds[0])
        task_status.started(url)


async def serve_runtime(rt: Runtime, port: int, stop: trio.CancelScope, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """The UI of ``rt`` and its store (``rt.serve_ui()``): its own jobs directly, the other live
    runtimes' through their control endpoints; until ``stop`` is cancelled (the runtime closes)."""
    path = getattr(rt.store, "path", None)
    client = ControlClient(rt.store, Path(path) if path is not None else None, rt)
    with stop:
        await serve(JobSource(client), port, task_status=task_status)
