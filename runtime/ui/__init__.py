"""The browser UI (the ``ui`` extra): see and steer jobs -- ``corral ui`` or ``rt.serve_ui()``.

A small local web app on ``127.0.0.1`` only, on trio (Starlette under Hypercorn's trio worker):
server-rendered HTML, a little JavaScript, no build step, no CDN.  Layers::

    source   what the pages show, through the control client (jobs, a job, its events, processes)
    dag      a flow's steps laid out for the job page's SVG
    app      the ASGI app: pages, JSON and event-stream feeds, actions, the token gate
    server   Hypercorn on loopback with a random token
"""

from .server import HOST as HOST
from .server import serve as serve
from .server import serve_runtime as serve_runtime
from .source import JobSource as JobSource

__all__ = ["HOST", "JobSource", "serve", "serve_runtime"]
