"""An agent step's ACP session, recorded so that a resumed job's step re-attaches to it.

Each prompt turn of an agent step publishes an :class:`~runtime.core.events.AgentSession` event
naming the session it runs in.  A durable job stores it with its other events; when the job is
resumed after a crash or a drain, :func:`~runtime.store.restore` hands each step that had not
completed its iteration the session it was in (``Restored.sessions``), and the step's next turn
asks its agent to ``session/load`` it instead of starting from scratch.  An agent that does not
advertise ``loadSession``, or that refuses the id, gets a new session: the event says why
(``fallback``).  A session whose event had not reached the store before the crash is simply not
known, and the step starts a new one.
"""

from __future__ import annotations

from actors.acp import AgentAdapter, OpenedSession, UpdateCallback

from .events import AgentSession
from .hub import EventHub
from .resources import JobResources

__all__ = ["prompt_in_session"]


async def prompt_in_session(hub: EventHub, resources: JobResources, adapter: AgentAdapter, step: str,
                            iteration: int, text: str, on_update: UpdateCallback) -> str:
    """One prompt turn of ``step`` on ``adapter``, in the session it had before the job was
    resumed when there was one; the session it runs in is published first.  The stop reason."""

    def opened(session: OpenedSession) -> None:
        if not hub.closed:
            hub.publish(AgentSession, step=step, session_id=session.session_id, iteration=iteration,
                        loaded=session.loaded, fallback=session.fallback)

    return await adapter.prompt(text, on_update, load=resources.take_session(step, iteration),
                                on_session=opened)
