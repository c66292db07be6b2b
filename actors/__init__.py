"""corral actors: reusable building blocks with no knowledge of jobs or flows.

The actor primitive (mailbox, ask, supervision), contained process groups, JSON-RPC and ACP
clients, coalescing stream buffers and the recorder.  A job passes each what it needs (a sink to
publish to, a store to append to) as a plain callable or small protocol.
"""

from .actor import Actor, ActorStopped, RestartIntensityExceeded, Supervisor

__all__ = ["Actor", "ActorStopped", "RestartIntensityExceeded", "Supervisor"]
