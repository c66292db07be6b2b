"""What a job's nursery holds: its process groups, streams, agent adapters and workspace.

Each is started in the job's nursery and gone with it; :class:`JobResources` only keeps count
(``stats()`` and the leak checks read these counts).

An agent adapter lives only while a step still able to run needs it.  It is started on demand
(:meth:`JobResources.adapter`, when an agent step asks for it) and shared by the job's agent
steps with an equal spec; after every step result, pause and resume the job calls
:meth:`JobResources.release_adapters`, which stops each adapter whose spec no *running* agent
step uses and -- unless the job is paused -- no *pending* one either
(:meth:`~runtime.core.steps.StepTable.agents_needed`).  So a paused job holds no adapter its
running steps do not use, a finished agent step's adapter goes as soon as no step waiting to run
shares its spec, and a step a loop (or a resume) runs again gets a fresh adapter on demand, or the
live one of its spec if another step kept it up.  Stopping is the adapter's own cancellation:
in-flight sessions hear ``session/cancel``, then its process group is torn down (SIGTERM, grace,
SIGKILL) and its task in the job's nursery ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from actors.acp import AgentAdapter
from actors.process import ProcessGroup, find_marked, open_process_group
from actors.stream import Stream, StreamKind, StreamMode, open_stream

from ..flow import AgentSpec
from .services import JobServices
from .states import JobStateError

if TYPE_CHECKING:
    from .steps import StepTable

__all__ = ["JobResources"]

_EMPTY: frozenset[Any] = frozenset()
_NO_ADAPTERS: Mapping[AgentSpec, AgentAdapter | trio.Event] = MappingProxyType({})


class JobResources:
    """The resources of one job, in its nursery (set while the job runs)."""

    # most jobs start no process, stream or adapter: their containers are made on first use
    # (one job object fewer each for the garbage collector to walk while 100k jobs are live)
    __slots__ = ("_adapters", "_job_id", "_services", "_sessions", "_stops", "_workspace", "process_groups",
                 "running_in", "streams")

    def __init__(self, job_id: str, services: JobServices,
                 sessions: Mapping[tuple[str, int], str] | None = None) -> None:
        self._job_id = job_id
        self._services = services
        # (step, iteration) -> the ACP session a resumed job's agent step re-attaches to (taken once)
        self._sessions = dict(sessions) if sessions else None
        self.running_in: trio.Nursery | None = None
        """The job's nursery while it runs (set and cleared by the job), else ``None``."""
        self._workspace: Path | None = None
        self.process_groups: AbstractSet[ProcessGroup] = _EMPTY
        """The job's live process groups."""
        self.streams: AbstractSet[Stream] = _EMPTY
        """The job's streams not yet known to be done (see :meth:`open_streams`)."""
        self._adapters: dict[AgentSpec, AgentAdapter | trio.Event] | None = None
        self._stops: dict[AgentAdapter, trio.CancelScope] | None = None  # what stops each live adapter

    @property
    def adapters(self) -> Mapping[AgentSpec, AgentAdapter | trio.Event]:
        """The job's adapters by spec (an event while one is starting)."""
        return self._adapters if self._adapters is not None else _NO_ADAPTERS

    @property
    def nursery(self) -> trio.Nursery:
        """The job's nursery; :class:`JobStateError` when the job is not running."""
        if self.running_in is None:
            raise JobStateError(f"job {self._job_id} is not running")
        return self.running_in


    def workspace(self) -> Path:
        """The job's workspace directory, created on first use."""
        if self._workspace is None:
            self._workspace = self._services.workspace(self._job_id)
        return self._workspace

    # -- processes ------------------------------------------------------------------------------

    def register_group(self, group: ProcessGroup, live: bool) -> None:
        """A process group of the job started (``live``) or ended."""
        groups = self.process_groups
        if live:
            if not isinstance(groups, set):
                groups = self.process_groups = set()
            groups.add(group)
        elif isinstance(groups, set):
            groups.discard(group)
        self._services.group_changed(self._job_id, group, live)

    @asynccontextmanager
    async def open_process(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                           cwd: str | Path | None = None, **kw: Any) -> AsyncIterator[ProcessGroup]:
        """A contained process group (own session, the job's marker, bounded teardown)."""
        options: dict[str, Any] = {"stdin_grace": self._services.process.stdin_grace,
                                   "term_grace": self._services.process.term_grace, **kw}
        async with open_process_group(command, marker=self._services.marker(self._job_id), env=env,
                                      cwd=cwd if cwd is not None else self.workspace(), **options) as group:
            self.register_group(group, True)
            try:
                yield group
            finally:
                self.register_group(group, False)

    def live_processes(self) -> int:
        """Live OS processes of the job's process groups, descendants and escapers included."""
        if not self.process_groups:
            return 0
        runtime_id, job_id = self._services.runtime_id, self._job_id
        return len(find_marked(lambda m: m.job_id == job_id and m.runtime_id == runtime_id))

    def take_session(self, step: str, iteration: int) -> str | None:
        """The ACP session ``step`` ran in at ``iteration`` before the job was resumed, once:
        a later attempt (a retry) opens a new one."""
        return self._sessions.pop((step, iteration), None) if self._sessions else None

    async def adapter(self, spec: AgentSpec) -> AgentAdapter:
        """The job's adapter for ``spec``: started on first use in the job's nursery, then shared."""
        if self._adapters is None:
            self._adapters = {}
        adapters = self._adapters
        while True:
            entry = adapters.get(spec)
            if isinstance(entry, trio.Event):  # another step is starting it
                await entry.wait()
                continue
            if entry is not None and entry.usable:
                await trio.lowlevel.checkpoint()
                return entry
            starting = trio.Event()
            adapters[spec] = starting
            try:
                adapter = self._services.adapter(self._job_id, spec, self.workspace(), self.register_group)
                await self.nursery.start(self._run_adapter, adapter,
                                         name=f"corral.task:{self._job_id}:adapter")
            except BaseException:
                del adapters[spec]
                raise
            finally:
                starting.set()
            adapters[spec] = adapter
            return adapter

    async def _run_adapter(self, adapter: AgentAdapter, *,
                           task_status: trio.TaskStatus[AgentAdapter] = trio.TASK_STATUS_IGNORED) -> None:
        if self._stops is None:
            self._stops = {}
        stops = self._stops
        stops[adapter] = scope = trio.CancelScope()
        try:
            with scope:  # cancelled by release_adapters: the adapter's own teardown, bounded
                await adapter.run(task_status=task_status)
        finally:
            del stops[adapter]

    def release_adapters(self, steps: StepTable, paused: bool) -> None:
        """Stop every adapter no step still able to run needs (see the module docstring)."""
        adapters = self._adapters
        if not adapters:
            return
        needed = steps.agents_needed(paused)
        for spec, entry in list(adapters.items()):
            # one still starting (an event) is awaited by a running step: it keeps its spec
            if spec not in needed and isinstance(entry, AgentAdapter):
                del adapters[spec]
                stop = self._stops.get(entry) if self._stops is not None else None
                if stop is not None:
                    stop.cancel()

    # -- streams --------------------------------------------------------------------------------

    def stream(self, publish: Callable[[Any], None], kind: StreamKind, index: int | None,
               mode: StreamMode, **kw: Any) -> Stream:
        """A stream in the job's nursery whose updates go to ``publish``, counted while open."""
        stream = open_stream(self.nursery, publish, kind=kind, index=index, mode=mode, **kw)
        self.streams = {*(s for s in self.streams if _open(s)), stream}
        return stream

    def open_streams(self) -> int:
        """Streams not yet closed, or whose buffer still runs."""
        return sum(1 for s in self.streams if _open(s))


def _open(stream: Stream) -> bool:
    return not stream.closed or (stream.buffer is not None and stream.buffer.running)
