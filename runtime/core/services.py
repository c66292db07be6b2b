"""The one narrow interface a job gets from its runtime.

A :class:`~runtime.core.job.Job` never sees the :class:`~runtime.core.runtime.Runtime`.  It gets
a :class:`JobServices`, made once per runtime: process markers and teardown graces, workspaces,
agent adapters, its recording strategy, the store rows of its process groups, and two lifecycle
notifications (the job ended; drop it from the queue).  Nothing on the runtime's public surface
exists only for jobs.
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.acp import AgentAdapter, PermissionPolicy
from actors.log import get_logger
from actors.process import Marker, ProcessGroup

from ..flow import AgentSpec, Flow
from ..flow.codec import flow_to_dict
from ..flow.secrets import agent_env, mcp_servers
from ..store import ProcessGroupRow, Store, group_row
from .hub import EventHub
from .recording import Recording, RecordLimits
from .states import JobResult
from .tracing import JobTracing
from .watch import JobWatch

__all__ = ["GroupOp", "JobServices", "ProcessOptions"]

_log = get_logger("corral.runtime")

GroupOp = tuple[str, ProcessGroupRow | str]
"""``("put", row)`` or ``("delete", marker)``: a process-group row for the store's orphan sweep."""


@attrs.frozen
class ProcessOptions:
    """How a job's process groups are torn down: seconds after stdin closes, then after SIGTERM,
    before SIGKILL; and how long an agent may take to start when its spec leaves it ``None``."""

    stdin_grace: float = 0.5
    term_grace: float = 2.0
    agent_start_timeout: float = 30.0


class JobServices:
    """What every job of one runtime shares.  Private: users never hold one."""

    __slots__ = ("_flow_dicts", "_group_ops", "_off", "_own_workspace", "_started", "finished", "limits", "pid",
                 "process", "runtime_id", "store", "tracing", "unqueue", "watch", "workspace_root")

    def __init__(self, *, runtime_id: str, pid: int, started: float, store: Store, process: ProcessOptions,
                 limits: RecordLimits, workspace_root: Path | None,
                 finished: Callable[[str, JobResult], Awaitable[None]],
                 unqueue: Callable[[str], bool], tracing: JobTracing | None = None) -> None:
        self.runtime_id = runtime_id
        self.pid = pid
        self._started = started
        self.store = store
        self.process = process
        self.limits = limits
        self.workspace_root = workspace_root
        self._own_workspace: Path | None = None
        self.finished = finished
        """``await finished(job_id, result)``: the job ended and its nursery closed; the runtime
        keeps its result and starts the next queued job."""
        self.unqueue = unqueue
        """``unqueue(job_id)``: remove a queued job before it starts; ``False`` if not queued."""
        self.tracing = tracing
        """The runtime's OpenTelemetry tracing (``None``: off, and a job's events get no sink for it)."""
        self._group_ops: trio.MemorySendChannel[GroupOp] | None = None
        self.watch = JobWatch()
        """Told when a job's state changes (the control endpoint's ``watch``)."""
        self._off = Recording("", store, limits, _never)  # recording off: shared, holds no job
        self._flow_dicts: collections.OrderedDict[int, tuple[Flow, dict[str, Any]]] = collections.OrderedDict()

    # -- processes and agents ---------------------------------------------------------------------

    def marker(self, job_id: str) -> Marker:
        """The environment marker of a new process group of ``job_id``."""
        return Marker(self.runtime_id, job_id, runtime_pid=self.pid, runtime_started=self._started)

    def adapter(self, job_id: str, spec: AgentSpec, workspace: Path,
                on_group: Callable[[ProcessGroup, bool], None]) -> AgentAdapter:
        """A new (not yet started) adapter for ``spec``, its processes marked as ``job_id``'s; its
        ``env_from`` (and its MCP servers') read from the runtime's environment now
        (:class:`SecretUnavailable` if missing)."""
        return AgentAdapter(
            spec.command, marker=self.marker(job_id), workspace=workspace, env=agent_env(spec, os.environ, job_id),
            permissions=PermissionPolicy(spec.permissions), on_group=on_group, auth=spec.auth, terminals=spec.terminals,
            stdin_grace=self.process.stdin_grace, term_grace=self.process.term_grace,
            start_timeout=spec.start_timeout if spec.start_timeout is not None else self.process.agent_start_timeout,
            mcp_servers=mcp_servers(spec, os.environ, job_id), mode=spec.mode,
        )

    def record_groups(self, ops: trio.MemorySendChannel[GroupOp]) -> None:
        """Send process-group rows to ``ops`` (the runtime's ordered writer to a persistent store)."""
        self._group_ops = ops

    def group_changed(self, job_id: str, group: ProcessGroup, live: bool) -> None:
        """A process group of ``job_id`` started or ended: kept in the store for the orphan sweep."""
        if self._group_ops is None:
            return
        op: GroupOp = ("put", group_row(group.marker, group.pgid)) if live else ("delete", group.marker.env_value())
        try:
            self._group_ops.send_nowait(op)
        except (trio.WouldBlock, trio.ClosedResourceError):
            _log.warning("process_group_row_dropped", job_id=job_id)

    # -- workspaces -----------------------------------------------------------------------------

    def workspace(self, job_id: str) -> Path:
        """``<root>/<job_id>/``, created; the root is the runtime's, or a temporary directory."""
        if self.workspace_root is None:
            if self._own_workspace is None:
                self._own_workspace = Path(tempfile.mkdtemp(prefix=f"corral-{self.runtime_id[:8]}-"))
            root = self._own_workspace
        else:
            root = self.workspace_root
        path = root / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def take_own_workspace(self) -> Path | None:
        """The temporary workspace root made for jobs (to remove when the runtime closes)."""
        own, self._own_workspace = self._own_workspace, None
        return own

    # -- events -------------------------------------------------------------------------------

    def hub(self, job_id: str, flow: str, first_seq: int) -> EventHub:
        """A new job's event hub; with tracing on, its spans are the hub's observer (built now,
        so the job span's parent is the span current where the job is spawned)."""
        hub = EventHub(job_id, first_seq=first_seq, on_change=self.watch.changed)
        if self.tracing is not None:
            hub.observer = self.tracing.sink(job_id, flow)
        return hub

    # -- recording ------------------------------------------------------------------------------

    def recording(self, strategy: type[Recording], job_id: str,
                  on_error: Callable[[BaseException], None]) -> Recording:
        """``job_id``'s recording, by ``strategy`` (:func:`~runtime.core.recording.recording_for`)."""
        if strategy is Recording:
            return self._off
        return strategy(job_id, self.store, self.limits, on_error)

    def flow_dict(self, flow: Flow) -> dict[str, Any]:
        """``flow_to_dict(flow)``, cached for the flows most recently spawned."""
        key = id(flow)
        hit = self._flow_dicts.get(key)
        if hit is not None and hit[0] is flow:
            self._flow_dicts.move_to_end(key)
            return hit[1]
        data = flow_to_dict(flow)
        self._flow_dicts[key] = (flow, data)
        while len(self._flow_dicts) > 64:
            self._flow_dicts.popitem(last=False)
        return data

    # -- lifecycle ------------------------------------------------------------------------------


def _never(exc: BaseException) -> None:
    raise AssertionError("recording off writes nothing, so nothing fails") from exc
