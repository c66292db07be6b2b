"""The step context ``ctx`` passed to every python step: the only way a step reaches its job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from actors.acp import AgentAdapter, UpdateCallback
from actors.actor import Actor
from actors.log import Logger, get_logger
from actors.process import ProcessGroup
from actors.stream import Stream, StreamKind, StreamMode

from ..flow import AgentSpec, InputRef, Step
from .agent_sessions import prompt_in_session
from .events import AgentUpdate
from .hub import EventHub
from .resources import JobResources

__all__ = ["StepContext", "StepHost"]

A = TypeVar("A", bound=Actor)


class StepHost(Protocol):
    """What a step context reads of its job (the job actor satisfies it)."""

    @property
    def id(self) -> str: ...
    @property
    def hub(self) -> EventHub: ...
    @property
    def resources(self) -> JobResources: ...
    @property
    def resume_payload(self) -> Any: ...
    def resolve_ref(self, ref: InputRef) -> Any: ...


class StepContext:
    """What a running step may touch.  Everything it starts lives in its job's nursery.

    Attributes: ``job_id``, ``step`` (name), ``attempt`` (1-based), ``iteration`` (0-based loop
    count), ``inputs`` (resolved), ``resume`` (the last ``job.resume`` payload or ``None``) and
    ``log`` (a structlog logger with ``job_id`` and ``step`` bound).
    """

    __slots__ = ("_job", "_log", "attempt", "inputs", "iteration", "job_id", "step")

    def __init__(self, job: StepHost, step: str, attempt: int, iteration: int,
                 inputs: Mapping[str, Any]) -> None:
        self._job = job
        self.job_id = job.id
        self.step = step
        self.attempt = attempt
        self.iteration = iteration
        self.inputs = inputs
        self._log: Logger | None = None

    @property
    def log(self) -> Logger:
        """A structlog logger bound to ``job_id`` and ``step``."""
        if self._log is None:
            self._log = get_logger("corral.step").bind(job_id=self.job_id, step=self.step)
        return self._log

    @property
    def resume(self) -> Any:
        return self._job.resume_payload

    @property
    def workspace(self) -> Path:
        """The job's workspace directory (created on first use); agents' file access is confined to it."""
        return self._job.resources.workspace()

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Start a task in the job's nursery: it outlives this step and dies with the job."""
        self._job.resources.nursery.start_soon(fn, *args, name=name or f"corral.task:{self.job_id}:{self.step}")

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start`` in the job's nursery; returns the value passed to ``task_status.started``."""
        return await self._job.resources.nursery.start(fn, *args)

    async def start_actor(self, actor: A) -> A:
        """Start ``actor`` in the job's nursery; it lives and dies with the job."""
        await self._job.resources.nursery.start(actor.run)
        return actor

    def open_process(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                     cwd: str | Path | None = None, **kw: Any) -> AbstractAsyncContextManager[ProcessGroup]:
        """A contained process group (own session, job marker, bounded teardown) for the body:
        ``async with ctx.open_process([...]) as group``.  ``cwd`` defaults to the workspace."""
        return self._job.resources.open_process(command, env=env, cwd=cwd, **kw)

    def stream(self, kind: StreamKind = "text", index: int | None = None,
               mode: StreamMode = "coalesced", **kw: Any) -> Stream:
        """A stream context (``async with ctx.stream() as s``) whose updates become job events."""
        return self._job.resources.stream(self._job.hub.step_stream(self.step), kind, index, mode, **kw)

    def agent_update(self, kind: str, data: Mapping[str, Any]) -> None:
        """Publish an :class:`~runtime.core.events.AgentUpdate` of this step (what an agent step
        does with the ``session/update`` kinds that are not its message stream)."""
        hub = self._job.hub
        if not hub.closed:
            hub.publish(AgentUpdate, step=self.step, kind=kind, data=data)

    async def agent(self, spec: AgentSpec) -> AgentAdapter:
        """The job's adapter for ``spec`` (started on demand; shared within the job only)."""
        return await self._job.resources.adapter(spec)

    async def prompt_agent(self, spec: AgentSpec, text: str, on_update: UpdateCallback) -> str:
        """One prompt turn on the job's adapter for ``spec``; returns the stop reason.

        ``on_update`` gets each raw ACP ``session/update`` of the turn.  The turn's ACP session is
        published as an :class:`~runtime.core.events.AgentSession` event; when the job was resumed
        (after a crash or a drain) while this step was in a turn, the agent is asked to reload that
        session (``session/load``), so the work goes on where it was (see
        :mod:`runtime.core.agent_sessions`).
        """
        adapter = await self.agent(spec)
        return await prompt_in_session(self._job.hub, self._job.resources, adapter, self.step, self.iteration,
                                       text, on_update)

    def template_lookup(self, step: Step, inputs: Mapping[str, Any]) -> Callable[[str], Any]:
        """Resolve a prompt placeholder: a local input (with a dotted path) or an input reference."""
        job = self._job

        def lookup(name: str) -> Any:
            head, *path = name.split(".")
            if head in inputs:
                value = inputs[head]
                for i, key in enumerate(path):
                    if not isinstance(value, Mapping) or key not in value:
                        raise KeyError(f"prompt placeholder {{{'.'.join([head, *path[: i + 1]])}}} is missing")
                    value = value[key]
                return value
            return job.resolve_ref(step.prompt_refs[name])

        return lookup
