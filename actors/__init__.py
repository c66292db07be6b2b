"""corral actors: reusable building blocks with no knowledge of jobs or flows.

The actor primitive (mailbox, ask, supervision), contained process groups, JSON-RPC and ACP
clients, coalescing stream buffers and the recorder.  A job passes each what it needs (a sink to
publish to, a store to append to) as a plain callable or small protocol.  Nothing here imports
``runtime``.

Layers, each building only on those below it (checked by import-linter, ``.importlinter``)::

    acp        JSON-RPC framing, the ACP client, the agent adapter       (on process)
    process    contained process trees: marker, sweep, reap, spawn, stdout, group
    stream     streamed messages: parts, buffer, content, message
    actor      the actor primitive and its supervisor
    recorder   the per-job bounded ring and batched writer
    log        quiet structlog-style loggers over the standard library
    _groups    the exception-group unwraps every owner of a nursery shares

Beside them, two programs that run as processes of their own and import only the standard
library: ``keeper`` (the lifeline guard at the head of a process group, run by path) and
``fake_agent`` (a scripted ACP agent for demos and tests, ``python -m actors.fake_agent``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .actor import Actor, ActorStopped, RestartIntensityExceeded, Supervisor

__all__ = ["Actor", "ActorStopped", "RestartIntensityExceeded", "Supervisor"]


def __getattr__(name: str) -> object:
    # Imported on first use, so that ``python -m actors.fake_agent`` (an agent process, started
    # once per adapter) loads only the standard library, not trio and structlog.
    if name in __all__:
        from . import actor

        return getattr(actor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
