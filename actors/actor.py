"""The actor primitive: a bounded mailbox served by one task in the nursery it is started in.

An :class:`Actor` is started with ``await nursery.start(actor.run)``.  Its mailbox is a bounded
trio memory channel: :meth:`Actor.send` waits for space (backpressure), :meth:`Actor.send_nowait`
raises :class:`trio.WouldBlock` instead, and :meth:`Actor.ask` sends a request and waits for the
reply.  A reply slot dies with the actor: asking a stopped actor raises :class:`ActorStopped` and
never hangs.

:class:`Supervisor` restarts a crashed actor up to ``max_restarts`` times within ``window``
seconds (OTP's intensity rule); one crash more and the failure escalates to the parent nursery.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import attrs
import trio

from ._groups import innermost
from .log import get_logger

__all__ = ["Actor", "ActorStopped", "RestartIntensityExceeded", "Supervisor"]

_log = get_logger("actors.actor")


class ActorStopped(Exception):
    """The actor is not running (never started, stopped, or crashed): no reply will come."""


class RestartIntensityExceeded(Exception):
    """A supervised actor crashed more than ``max_restarts`` times within ``window`` seconds."""


@attrs.define(eq=False)
class _Reply:
    """A one-shot reply slot for :meth:`Actor.ask`."""

    event: trio.Event = attrs.field(factory=trio.Event)
    value: Any = None
    error: BaseException | None = None

    def set(self, value: Any) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


@attrs.frozen(eq=False)
class _Ask:
    msg: Any
    reply: _Reply


class Actor:
    """Base class for actors.  Override :meth:`handle`; its return value answers an :meth:`ask`.

    An exception escaping :meth:`handle` crashes the actor: it propagates out of :meth:`run` into
    the owning nursery (or to a :class:`Supervisor`), and every pending ask gets
    :class:`ActorStopped`.

    The base class has ``__slots__`` (a runtime holds one job actor per job); a subclass without
    its own ``__slots__`` simply gets an instance ``__dict__``.
    """

    __slots__ = ("__weakref__", "_asks", "_channels", "_mailbox_capacity", "_state", "_stop_requested")

    def __init__(self, *, mailbox_size: int = 64) -> None:
        self._mailbox_capacity = mailbox_size
        self._channels: tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]] | None = None
        self._stop_requested = False
        self._asks: set[_Reply] | None = None  # pending asks, made on the first ask
        self._state = "new"  # new -> running -> stopped

    def _mailbox(self) -> tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]]:
        """The mailbox, made on first use: an actor nobody sends to never allocates one."""
        if self._channels is None:
            self._channels = trio.open_memory_channel[Any](self._mailbox_capacity)
            if self._stop_requested:
                self._channels[0].close()
        return self._channels

    # -- the running side -------------------------------------------------------------------

    async def handle(self, msg: Any) -> Any:
        """Process one message.  The return value is the reply to an :meth:`ask`."""
        raise NotImplementedError

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until :meth:`stop`; pass to ``nursery.start``."""
        self._state = "running"
        try:
            task_status.started(self)
            await self.serve()
        finally:
            self._stopped()

    async def serve(self) -> None:
        """The mailbox loop.  Subclasses that open resources around it call this from ``run``."""
        async for msg in self._mailbox()[1]:
            await self._dispatch(msg)
            if self._state != "running":
                break

    async def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, _Ask):
            if msg.reply.event.is_set():  # the asker gave up (timeout / cancellation)
                return
            result = await self.handle(msg.msg)
            msg.reply.set(result)
            if self._asks is not None:
                self._asks.discard(msg.reply)
        else:
            await self.handle(msg)

    def stop(self) -> None:
        """Stop after the message being handled; queued messages are dropped, asks fail."""
        self._stop_requested = True
        if self._state == "running":
            self._state = "stopping"
        if self._channels is not None:
            self._channels[0].close()

    def _stopped(self) -> None:
        self._state = "stopped"
        self._stop_requested = True
        if self._channels is not None:
            self._channels[0].close()
            self._channels[1].close()
        if self._asks:
            err = ActorStopped(f"{type(self).__name__} stopped")
            for reply in self._asks:
                reply.fail(err)
            self._asks.clear()

    @property
    def running(self) -> bool:
        """True while the actor serves its mailbox."""
        return self._state == "running"

    @property
    def mailbox_size(self) -> int:
        """Messages waiting in the mailbox."""
        return 0 if self._channels is None else self._channels[0].statistics().current_buffer_used

    # -- the calling side -------------------------------------------------------------------

    def _check(self) -> None:
        if self._stop_requested or self._state in ("stopping", "stopped"):
            raise ActorStopped(f"{type(self).__name__} is stopped")

    async def send(self, msg: Any) -> None:
        """Deliver ``msg``, waiting while the mailbox is full (backpressure)."""
        self._check()
        try:
            await self._mailbox()[0].send(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(f"{type(self).__name__} is stopped") from None

    def send_nowait(self, msg: Any) -> None:
        """Deliver ``msg`` or raise :class:`trio.WouldBlock` when the mailbox is full."""
        self._check()
        try:
            self._mailbox()[0].send_nowait(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(f"{type(self).__name__} is stopped") from None

    async def ask(self, msg: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the API asked for)
        """Send ``msg`` and wait for :meth:`handle`'s return value.

        Raises :class:`ActorStopped` if the actor is or becomes stopped before replying, and
        :class:`trio.TooSlowError` after ``timeout`` seconds.
        """
        reply = _Reply()
        if self._asks is None:
            self._asks = set()
        self._asks.add(reply)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self.send(_Ask(msg, reply))
                if self._state == "stopped":  # raced with the actor's exit
                    raise ActorStopped(f"{type(self).__name__} is stopped")
                await reply.event.wait()
        finally:
            self._asks.discard(reply)  # made above, never unset
            reply.event.set()  # a late reply is dropped; the actor skips an abandoned ask
        if reply.error is not None:
            raise reply.error
        return reply.value


A = TypeVar("A", bound=Actor)


class Supervisor(Generic[A]):
    """Run an actor made by ``factory``; restart it when it crashes.

    More than ``max_restarts`` crashes within ``window`` seconds (trio clock) raise
    :class:`RestartIntensityExceeded` into the parent nursery, chained to the last crash.
    ``supervisor.actor`` is the current incarnation.  A clean return of the actor ends the
    supervisor.
    """

    def __init__(self, factory: Callable[[], A], *, max_restarts: int = 3, window: float = 5.0):
        self._factory = factory
        self.max_restarts = max_restarts
        self.window = window
        self.restarts = 0
        self.actor: A | None = None

    async def run(self, *, task_status: trio.TaskStatus[Supervisor[A]] = trio.TASK_STATUS_IGNORED) -> None:
        crashes: collections.deque[float] = collections.deque()
        first = True
        while True:
            actor = self._factory()
            self.actor = actor
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(actor.run)
                    if first:
                        first = False
                        task_status.started(self)
                return
            except Exception as caught:
                exc = innermost(caught)
                now = trio.current_time()
                crashes.append(now)
                while crashes and crashes[0] < now - self.window:
                    crashes.popleft()
                if len(crashes) > self.max_restarts:
                    raise RestartIntensityExceeded(
                        f"{type(actor).__name__} crashed {len(crashes)} times within "
                        f"{self.window}s (max_restarts={self.max_restarts})"
                    ) from exc
                self.restarts += 1
                _log.warning("actor_restart", actor=type(actor).__name__, error=repr(exc),
                             restarts=self.restarts)
                if first:  # crashed before it was ready: keep trying, the parent still waits
                    continue
