"""An ACP agent adapter: one contained process group plus the ACP client that drives it.

Started in its owner's nursery (``await nursery.start(adapter.run)``), it spawns the agent in
its own process group, connects an :class:`~actors.acp.AcpClient` to its stdio and runs
``initialize``.  Any number of prompt turns can then run, each in its own session.  When the owner
is cancelled, the adapter first tells every in-flight session ``session/cancel`` (shielded,
bounded), and only then tears the process tree down — so an agent hears the cancel before it
hears SIGTERM.

``initialize`` (then ``authenticate`` when an ``auth`` method id is given), each
``session/new`` / ``session/load`` and ``session/set_mode`` are bounded by ``start_timeout``.
Every failure of an ACP call is raised as an :class:`~actors.acp.failures.AgentError` naming the
agent, the phase, the JSON-RPC code, message and data, and the tail of the agent's stderr.

Each session is opened with the adapter's ``mcp_servers`` (ACP ``McpServer`` objects, passed as
``mcpServers``; a stdio server is the agent's own child, so it dies with the agent's tree) and,
when a ``mode`` is given, switched to it with ``session/set_mode`` -- refused first, naming the
mode and the available ones, if the agent advertised modes and this is not one of them.

With ``terminals=True`` the agent may run commands through ``terminal/*``
(:mod:`actors.acp.terminals`): each terminal is a process group of its own in the adapter's
nursery, released when the prompt turn that made it ends and torn down with the adapter.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from .._groups import raise_lone
from ..log import get_logger
from ..process import Marker, ProcessGroup
from .client import AcpClient, UpdateCallback
from .errors import ProtocolError, RemoteError
from .failures import AgentError, AgentProtocolError, AgentStartTimeout, agent_name, stderr_lines
from .permissions import PermissionPolicy
from .session import Session
from .terminals import TerminalLimits, Terminals

__all__ = ["AgentAdapter", "OpenedSession"]

_log = get_logger(__name__)

_CANCEL_GRACE = 1.0
_STDERR_SETTLE = 0.05  # how long a failed call waits for the agent's last stderr lines


@attrs.frozen
class OpenedSession:
    """The session a prompt turn runs in: ``loaded`` (re-attached with ``session/load``) or new;
    ``fallback`` says why a session asked for was not reloaded (``None`` when none was asked for,
    or it was)."""

    session_id: str
    loaded: bool = False
    fallback: str | None = None


class AgentAdapter:
    """One agent process tree and its ACP connection."""

    def __init__(self, command: Sequence[str], *, marker: Marker, workspace: Path,
                 env: Mapping[str, str] | None = None, permissions: PermissionPolicy | None = None,
                 stdin_grace: float = 0.5, term_grace: float = 2.0, start_timeout: float = 30.0,
                 max_line_bytes: int = 1 << 20, auth: str | None = None,
                 on_group: Callable[[ProcessGroup, bool], None] | None = None,
                 terminals: bool = False, terminal_limits: TerminalLimits | None = None,
                 mcp_servers: Sequence[Mapping[str, Any]] = (), mode: str | None = None) -> None:
        self.group = ProcessGroup(command, marker=marker, env=env, cwd=workspace,
                                  stdin_grace=stdin_grace, term_grace=term_grace)
        self.workspace = workspace
        self._permissions = permissions or PermissionPolicy()
        self._start_timeout = start_timeout
        self._auth = auth
        self._mcp_servers = tuple(mcp_servers)  # ACP McpServer objects: their env/headers are secrets
        self._mode = mode
        self.auth_methods: list[object] = []
        """The ``authMethods`` the agent advertised in its ``initialize`` answer."""
        self.can_load = False
        """The agent advertised ``agentCapabilities.loadSession`` (it answers ``session/load``)."""
        self._max_line_bytes = max_line_bytes
        self._on_group = on_group
        self._client: AcpClient | None = None
        self._start_error: Exception | None = None
        self._shield = trio.CancelScope(shield=True)
        self._sessions: set[str] = set()
        self.terminals: Terminals | None = Terminals(
            marker=marker, workspace=workspace, sessions=self._sessions, env=env, on_group=on_group,
            term_grace=term_grace, limits=terminal_limits) if terminals else None
        """The agent's ``terminal/*`` (``None`` unless ``terminals=True``)."""
        self.alive = False
        self.prompts = 0

    async def _hold(self, ready: trio.Event) -> None:
        # The process group and the ACP connection run shielded, so that the owner's cancellation
        # does not tear them down before session/cancel reached the agent; run() lifts the shield.
        # (Started with start_soon + an event, never nursery.start: a shielded task that is still
        # starting when its starter is cancelled would never be handed over, and never end.)
        registered = False
        try:
            with self._shield:
                async with trio.open_nursery() as nursery:
                    try:
                        await nursery.start(self.group.run)
                        if self._on_group is not None:
                            self._on_group(self.group, True)
                            registered = True
                        if self.terminals is not None:  # in this nursery: they die with the adapter
                            await nursery.start(self.terminals.run)
                        client = AcpClient(self.group.stdin, self.group.stdout, workspace=self.workspace,
                                           permissions=self._permissions, max_line_bytes=self._max_line_bytes,
                                           request_timeout=None, terminals=self.terminals)  # bounded by _calls
                        await nursery.start(client.run)
                    except Exception as exc:
                        self._start_error = exc
                        return
                    finally:
                        ready.set()
                    self._client = client
                    await self.group.wait()
                    nursery.cancel_scope.cancel()
        finally:
            if registered and self._on_group is not None:
                self._on_group(self.group, False)

    async def run(self, *, task_status: trio.TaskStatus[AgentAdapter] = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn, connect, initialize; serve until cancelled or the agent exits."""
        with raise_lone():
            await self._serve(task_status)

    async def _serve(self, task_status: trio.TaskStatus[AgentAdapter]) -> None:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(self._hold, ready)
            try:
                await ready.wait()
                if self._start_error is not None:
                    raise self._start_error
                assert self._client is not None
                await self._start(self._client)
                self.alive = True
                task_status.started(self)
                await self.group.wait()
            finally:
                self.alive = False
                if self._client is not None and self._sessions:
                    with trio.CancelScope(shield=True), trio.move_on_after(_CANCEL_GRACE):
                        try:
                            for session_id in list(self._sessions):
                                await self._client.cancel(session_id)
                            await self._client.flush()
                        except ProtocolError:
                            pass  # the agent is gone already
                self._shield.shield = False
                nursery.cancel_scope.cancel()

    async def _start(self, client: AcpClient) -> None:
        done: list[str] = []
        async with self._calls("initialize", done) as phase:
            answer = await client.initialize()
            methods = answer.get("authMethods")
            self.auth_methods = list(methods) if isinstance(methods, list) else []
            capabilities = answer.get("agentCapabilities")
            self.can_load = isinstance(capabilities, dict) and capabilities.get("loadSession") is True
            done.append("initialize")
            if self._auth is not None:
                phase[0] = "authenticate"
                await client.authenticate(self._auth)

    @asynccontextmanager
    async def _calls(self, phase: str, done: list[str] | None = None) -> AsyncIterator[list[str]]:
        """Bound the calls inside by ``start_timeout`` (unless ``done`` is None) and raise every
        failure as an :class:`AgentError` naming the phase (the yielded list's one item)."""
        current = [phase]
        error: AgentError | None = None
        try:
            with trio.move_on_after(self._start_timeout if done is not None else math.inf) as scope:
                yield current
            if scope.cancelled_caught:
                error = AgentStartTimeout.waiting(self.group.command, current[0], self._start_timeout,
                                                  done or [], "")
        except AgentError:
            raise
        except RemoteError as exc:
            error = AgentError.from_remote(self._agent, current[0], exc, "", self.auth_methods)
        except ProtocolError as exc:
            error = AgentProtocolError(self._agent, current[0], str(exc))
        except trio.TooSlowError as exc:
            error = AgentStartTimeout(self._agent, current[0], str(exc))
        if error is not None:
            raise await self._with_stderr(error) from None

    async def _with_stderr(self, error: AgentError) -> AgentError:
        """``error`` again, with the tail of the agent's stderr (given a moment to arrive)."""
        with trio.CancelScope(shield=True):
            await trio.sleep(_STDERR_SETTLE)
        error.stderr = self._stderr()
        return error

    @property
    def _agent(self) -> str:
        return agent_name(self.group.command)

    def _stderr(self) -> str:
        return stderr_lines(self.group.stderr_tail)

    async def prompt(self, text: str, on_update: UpdateCallback, *, load: str | None = None,
                     on_session: Callable[[OpenedSession], None] | None = None) -> str:
        """Run one prompt turn; returns the stop reason.

        The turn runs in a new session (``session/new``) or, given ``load`` (the id of a session
        the agent opened for the same work before: a job resumed after a crash), in that session
        again, re-attached with ``session/load`` when the agent advertised ``loadSession``.  If it
        did not, or it refuses the id, the turn runs in a new session and the reason is logged at
        WARNING.  ``on_session`` is told which session the turn runs in before it starts.
        """
        if self._client is None or not self.alive:
            raise await self._with_stderr(
                AgentProtocolError(self._agent, "session/new", "agent adapter is not running"))
        opened, session = await self._open_session(self._client, load)
        session_id = opened.session_id
        if self._mode is not None:
            await self._set_mode(self._client, session, self._mode)
        if on_session is not None:
            on_session(opened)
        self._sessions.add(session_id)
        self.prompts += 1
        try:
            async with self._calls("session/prompt"):
                return await self._client.prompt(session_id, text, on_update)
        finally:
            self._sessions.discard(session_id)
            if self.terminals is not None:
                self.terminals.release_session(session_id)

    async def _open_session(self, client: AcpClient, load: str | None) -> tuple[OpenedSession, Session]:
        fallback: str | None = None
        if load is not None and not self.can_load:
            fallback = "the agent does not advertise loadSession"
        elif load is not None:
            try:
                async with self._calls("session/load", []):
                    loaded = await client.load_session(load, mcp_servers=self._mcp_servers)
                return OpenedSession(load, loaded=True), loaded
            except AgentError as exc:
                if exc.code is None:  # no answer, or the connection broke: not a refusal
                    raise
                fallback = f"session/load refused: JSON-RPC error {exc.code}: {exc.reason}"
        if fallback is not None:
            _log.warning("agent session not reloaded; opening a new one", agent=self._agent,
                         session_id=load, reason=fallback)
        async with self._calls("session/new", []):
            session = await client.open_session(mcp_servers=self._mcp_servers)
        return OpenedSession(session.session_id, fallback=fallback), session

    async def _set_mode(self, client: AcpClient, session: Session, mode: str) -> None:
        """``session/set_mode``; a mode the agent did not advertise is refused before asking."""
        if session.modes is not None and mode not in session.modes:
            listed = ", ".join(repr(m) for m in session.modes) or "(none)"
            raise await self._with_stderr(AgentError(
                self._agent, "session/set_mode", f"mode {mode!r} is not one of the agent's modes: {listed}"))
        async with self._calls("session/set_mode", []):
            await client.set_mode(session.session_id, mode)

    @property
    def usable(self) -> bool:
        """Running, with its connection intact (a crashed agent's adapter is on its way out)."""
        return self.alive and self._client is not None and self._client.closed_error is None

    def live_processes(self) -> int:
        """Live processes of the agent's tree and of its terminals' (blocking)."""
        return self.group.live_processes() + (self.terminals.live_processes() if self.terminals is not None else 0)

