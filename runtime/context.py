"""The step context ``ctx`` passed to every python step: the only way a step reaches its job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from actors.actor import Actor

if TYPE_CHECKING:
    from .job import Job

__all__ = ["StepContext"]

A = TypeVar("A", bound=Actor)


class StepContext:
    """What a running step may touch.  Everything it starts lives in its job's nursery.

    Attributes: ``job_id``, ``step`` (name), ``attempt`` (1-based), ``iteration`` (0-based loop
    count), ``inputs`` (resolved), ``resume`` (the last ``job.resume`` payload or ``None``) and
    ``log`` (a structlog logger with ``job_id`` and ``step`` bound).
    """

    __slots__ = ("_job", "_log", "attempt", "inputs", "iteration", "job_id", "step")

    def __init__(self, job: Job, step: str, attempt: int, iteration: int,
                 inputs: Mapping[str, Any]) -> None:
        self._job = job
        self.job_id = job.id
        self.step = step
        self.attempt = attempt
        self.iteration = iteration
        self.inputs = inputs
        self._log: Any = None

    @property
    def log(self) -> Any:
        """A structlog logger bound to ``job_id`` and ``step``."""
        if self._log is None:
            self._log = structlog.get_logger("corral.step").bind(job_id=self.job_id, step=self.step)
        return self._log

    @property
    def resume(self) -> Any:
        return self._job.resume_payload

    @property
    def workspace(self) -> Path:
        """The job's workspace directory (created on first use); agents' file access is confined to it."""
        return self._job.workspace()

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Start a task in the job's nursery: it outlives this step and dies with the job."""
        self._job.nursery.start_soon(fn, *args, name=name or f"corral.task:{self.job_id}:{self.step}")

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start`` in the job's nursery; returns the value passed to ``task_status.started``."""
        return await self._job.nursery.start(fn, *args)

    async def start_actor(self, actor: A) -> A:
        """Start ``actor`` in the job's nursery; it lives and dies with the job."""
        await self._job.nursery.start(actor.run)
        return actor
