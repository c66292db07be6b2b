"""Ray from trio: blocking Ray calls run in worker threads, bounded per runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

# Ray's annotations cover a part of its API only (no overload of ``ray.remote`` takes actor
# options; actor handles, their methods and object refs are untyped): Ray objects are ``Any``.
Ray = Any
"""The ``ray`` module."""
ActorHandle = Any
"""A Ray actor handle (``actor.method.remote(...)`` gives an object ref)."""


def import_ray() -> Ray:
    """The ``ray`` module (the optional extra ``corral[ray]``), imported when a cluster opens."""
    import ray

    return ray


def terminate(ray: Ray, actor: ActorHandle, grace: float) -> None:
    """End an actor gracefully (blocking), ``ray.kill`` it after ``grace`` seconds."""
    try:
        ray.get(actor.__ray_terminate__.remote(), timeout=grace)
    except ray.exceptions.GetTimeoutError:
        ray.kill(actor)
    except ray.exceptions.RayActorError:
        pass


class RayCalls:
    """One controller's Ray calls from trio: in threads under one limiter, abandoned on cancel."""

    def __init__(self, ray: Ray, limit: int) -> None:
        self.ray = ray
        self._limiter = trio.CapacityLimiter(limit)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a blocking call in a thread; a cancel abandons the thread (it ends on its own)."""
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter)

    async def get(self, method: Callable[..., Any], *args: Any) -> Any:
        """``ray.get(method(*args))``: call a remote method and wait for its value."""
        ray = self.ray
        return await self.run(lambda: ray.get(method(*args)))

    async def stream(self, actor: ActorHandle, job_id: str, from_seq: int) -> AsyncIterator[dict[str, Any]]:
        """The host's ``events(job_id, from_seq)`` stream, entry by entry (event dicts, and
        ``{"lagged": n}`` for entries its log no longer held); the Ray stream is cancelled after."""
        ray = self.ray
        gen = actor.events.options(num_returns="streaming").remote(job_id, from_seq)

        def step() -> list[dict[str, Any]] | None:
            try:
                batch: list[dict[str, Any]] = ray.get(next(gen))
            except StopIteration:
                return None
            return batch
        try:
            while True:
                batch = await self.run(step)
                if batch is None:
                    return
                for data in batch:
                    yield data
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: ray.cancel(gen), limiter=self._limiter)

    async def terminate(self, actor: ActorHandle, grace: float) -> None:
        """:func:`terminate` in a thread (not abandoned: it is bounded by ``grace``)."""
        await trio.to_thread.run_sync(terminate, self.ray, actor, grace)
