"""corral actors: reusable building blocks with no knowledge of jobs or flows.

The actor primitive (mailbox, ask, supervision), contained process groups, JSON-RPC and ACP
clients, coalescing stream buffers and the recorder.  A job passes each what it needs (a sink to
publish to, a store to append to) as a plain callable or small protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actor import Actor, ActorStopped, RestartIntensityExceeded, Supervisor

__all__ = ["Actor", "ActorStopped", "RestartIntensityExceeded", "Supervisor"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``python -m actors.fake_agent`` (an agent process, started
    # once per adapter) loads only the standard library, not trio and structlog.
    if name in __all__:
        from . import actor

        return getattr(actor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
