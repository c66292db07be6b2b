"""An Agent Client Protocol (ACP, protocolVersion 1) client over a JSON-RPC connection.

:class:`AcpClient` speaks to one agent process through a pair of trio byte
streams (the agent's stdin and stdout). It initializes the agent, opens
sessions (or re-attaches to one with ``session/load``), runs prompt turns and
streams each turn's ``session/update`` notifications to the caller, and answers
the agent's own requests:

- ``session/request_permission`` according to a :class:`PermissionPolicy`
  (by default every request is rejected);
- ``fs/read_text_file`` and ``fs/write_text_file``, confined to a workspace
  directory: a path that leaves it (``..``, an absolute path elsewhere, a
  symlink pointing out) is refused with an error that says so;
- ``terminal/*`` through a :class:`~actors.acp.terminals.Terminals` manager when one is given
  (then ``initialize`` advertises ``clientCapabilities.terminal``);
- anything else with JSON-RPC -32601 (method not found).

It knows nothing of jobs: the owner runs :meth:`AcpClient.run` in its nursery
and owns the agent process.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import trio

from .._groups import raise_lone
from ..log import EventLogger, get_logger
from .jsonrpc import JsonRpcConnection, MethodNotFound, ProtocolError, RemoteError
from .messages import Params, object_params
from .permissions import PermissionPolicy as PermissionPolicy
from .session import Session as Session
from .terminals import Terminals
from .workspace import RESOURCE_NOT_FOUND as RESOURCE_NOT_FOUND
from .workspace import Workspace

__all__ = ["PROTOCOL_VERSION", "RESOURCE_NOT_FOUND", "AcpClient", "PermissionPolicy", "Session"]

#: The ACP protocol version this client speaks.
PROTOCOL_VERSION = 1

_CLIENT_INFO = {"name": "corral", "version": "0.1.0"}
# Updates a turn may buffer ahead of a slow on_update before the reader waits.
_UPDATE_BUFFER = 64
# How long a cancelled prompt() may spend telling the agent to stop.
_CANCEL_NOTIFY_GRACE = 1.0
_REJECT_ALL = PermissionPolicy()  # the default policy (frozen)

UpdateCallback: TypeAlias = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Called with each ``session/update`` of a prompt turn (the raw ``update`` object); sync or async."""

async def _call(callback: UpdateCallback, update: dict[str, Any]) -> None:
    outcome = callback(update)
    if inspect.isawaitable(outcome):
        await outcome


class AcpClient:
    """An ACP client for one agent, over the agent's stdin (``conn_send``) and stdout.

    Args:
        conn_send: stream to the agent (its stdin).
        conn_recv: stream from the agent (its stdout).
        workspace: the only directory the agent may read and write through
            ``fs/*`` requests; also the default session ``cwd``.
        permissions: how to answer ``session/request_permission``.
        max_line_bytes: longest line accepted from the agent.
        request_timeout: bound on ``initialize``, ``authenticate`` and ``session/new``
            (prompt turns are bounded by the caller, e.g. with ``trio.fail_after``).
        log: a structlog logger to log through (default: this module's).
        terminals: serves ``terminal/*`` (default: none, they get -32601; the owner runs it).

    Start :meth:`run` in a nursery (``await nursery.start(client.run)``) before
    calling anything else. When the agent breaks the protocol or its output ends,
    every call raises :class:`~actors.acp.ProtocolError` naming the cause.
    """

    def __init__(
        self,
        conn_send: trio.abc.SendStream,
        conn_recv: trio.abc.ReceiveStream,
        *,
        workspace: Path,
        permissions: PermissionPolicy = _REJECT_ALL,
        max_line_bytes: int = 1 << 20,
        request_timeout: float | None = None,
        log: EventLogger | None = None,
        terminals: Terminals | None = None,
    ) -> None:
        self._permissions = permissions
        self._terminals = terminals
        self._log: EventLogger = log if log is not None else get_logger(__name__)
        self._workspace = Workspace(workspace, self._log)
        self._turns: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._conn = JsonRpcConnection(
            conn_send,
            conn_recv,
            handler=self._handle_request,
            on_notification=self._handle_notification,
            max_line_bytes=max_line_bytes,
            request_timeout=request_timeout,
            name="agent",
        )

    @property
    def closed_error(self) -> ProtocolError | None:
        """Why the connection to the agent ended, or ``None`` while it is usable."""
        return self._conn.closed_error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection; reports started once the reader runs.

        Returns (never raises a protocol error) when the agent's output ends or
        it breaks the protocol; see :meth:`JsonRpcConnection.run`.
        """
        await self._conn.run(task_status=task_status)

    async def initialize(self) -> dict[str, Any]:
        """Send ``initialize`` and return the agent's answer.

        Raises :class:`ProtocolError` if the agent speaks another protocol version.
        """
        result = await self._conn.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "clientCapabilities": {
                    "fs": {"readTextFile": True, "writeTextFile": True},
                    "terminal": self._terminals is not None,
                },
                "clientInfo": _CLIENT_INFO,
            },
        )
        if not isinstance(result, dict):
            raise ProtocolError(f"agent answered initialize with {result!r}, expected an object")
        version = result.get("protocolVersion")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"agent speaks ACP protocolVersion {version!r}; "
                f"this client speaks {PROTOCOL_VERSION}"
            )
        return result

    async def authenticate(self, method_id: str) -> None:
        """Authenticate with one of the ``authMethods`` of the ``initialize`` answer (``authenticate``)."""
        await self._conn.request("authenticate", {"methodId": method_id})

    async def new_session(self, cwd: Path | None = None, *,
                          mcp_servers: Sequence[Mapping[str, Any]] = ()) -> str:
        """Open a session (``session/new``) and return its id (see :meth:`open_session`)."""
        return (await self.open_session(cwd, mcp_servers=mcp_servers)).session_id

    async def open_session(self, cwd: Path | None = None, *,
                           mcp_servers: Sequence[Mapping[str, Any]] = ()) -> Session:
        """Open a session (``session/new``): its id and the modes the agent advertised.

        ``cwd`` defaults to the workspace; a relative ``cwd`` is taken relative to it.
        ``mcp_servers`` are ACP ``McpServer`` objects, sent as ``mcpServers`` (never logged:
        their ``env`` and ``headers`` hold secrets).
        """
        root = self._workspace.root
        directory = root / cwd if cwd is not None else root
        result = await self._conn.request(
            "session/new", {"cwd": str(directory), "mcpServers": [dict(s) for s in mcp_servers]})
        session_id = result.get("sessionId") if isinstance(result, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise ProtocolError(f"agent answered session/new without a sessionId: {result!r}")
        return Session.from_answer(session_id, result)

    async def set_mode(self, session_id: str, mode_id: str) -> None:
        """Switch the session to one of the agent's modes (``session/set_mode``)."""
        await self._conn.request("session/set_mode", {"sessionId": session_id, "modeId": mode_id})

    async def load_session(self, session_id: str, cwd: Path | None = None, *,
                           mcp_servers: Sequence[Mapping[str, Any]] = ()) -> Session:
        """Re-attach to a session the agent kept (``session/load``; only if it advertised
        ``agentCapabilities.loadSession``): the session, with the modes the agent advertised.

        The agent replays the session's history as ``session/update`` notifications before it
        answers; no prompt turn runs in the session then, so the client drops them.  Raises
        :class:`RemoteError` when the agent cannot load it (an unknown or expired id).
        """
        root = self._workspace.root
        directory = root / cwd if cwd is not None else root
        result = await self._conn.request(
            "session/load",
            {"sessionId": session_id, "cwd": str(directory), "mcpServers": [dict(s) for s in mcp_servers]},
        )
        return Session.from_answer(session_id, result)

    async def prompt(self, session_id: str, text: str, on_update: UpdateCallback) -> str:
        """Run one prompt turn and return its ``stopReason``.

        Every ``session/update`` for the session is passed to ``on_update`` (the
        raw ``update`` object; sync or async) in arrival order, all of them
        before this returns. If the caller is cancelled, or ``on_update``
        raises, while the turn is in flight, ``session/cancel`` is sent
        (shielded, bounded) and the cancellation or error propagates. Raises
        :class:`ProtocolError` if the connection breaks, :class:`RemoteError`
        if the agent refuses the prompt, :class:`RuntimeError` if a turn is
        already running in this session.
        """
        if session_id in self._turns:
            raise RuntimeError(f"a prompt turn is already running in session {session_id!r}")
        updates_send, updates_receive = trio.open_memory_channel[dict[str, Any]](_UPDATE_BUFFER)
        self._turns[session_id] = updates_send
        params = {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        answer: list[Any] = []
        failure: list[ProtocolError | RemoteError] = []

        async def send_prompt() -> None:
            with updates_send:  # closing ends the update loop once the answer is in
                try:
                    result = await self._conn.request("session/prompt", params, timeout=math.inf)
                except (ProtocolError, RemoteError) as exc:
                    failure.append(exc)  # raised after the updates that came before it
                else:
                    answer.append(result)

        try:
            with raise_lone():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_prompt)
                    with updates_receive:
                        async for update in updates_receive:
                            await _call(on_update, update)
        finally:
            if self._turns.get(session_id) is updates_send:
                del self._turns[session_id]
            updates_send.close()
            if not answer and not failure and self._conn.closed_error is None:
                await self._cancel_quietly(session_id)
        if failure:
            raise failure[0]
        result = answer[0]
        stop_reason = result.get("stopReason") if isinstance(result, dict) else None
        if not isinstance(stop_reason, str):
            raise ProtocolError(f"agent answered session/prompt without a stopReason: {result!r}")
        return stop_reason

    async def cancel(self, session_id: str) -> None:
        """Ask the agent to stop the session's turn (``session/cancel`` notification).

        The running :meth:`prompt` then returns the agent's stopReason,
        normally ``"cancelled"``.
        """
        await self._conn.notify("session/cancel", {"sessionId": session_id})

    async def flush(self) -> None:
        """Return once everything sent so far (e.g. a ``session/cancel``) reached the agent's stdin."""
        await self._conn.flush()

    # ------------------------------------------------------------- internals

    async def _cancel_quietly(self, session_id: str) -> None:
        with trio.move_on_after(_CANCEL_NOTIFY_GRACE, shield=True):
            try:
                await self.cancel(session_id)
            except ProtocolError:
                return
            self._log.info("prompt abandoned; sent session/cancel", session_id=session_id)

    async def _handle_notification(self, method: str, params: Params) -> None:
        if method != "session/update":
            self._log.debug("agent notification ignored", method=method)
            return
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        update = params.get("update") if isinstance(params, dict) else None
        if not isinstance(session_id, str) or not isinstance(update, dict):
            self._log.warning("malformed session/update ignored", params=params)
            return
        turn = self._turns.get(session_id)
        if turn is None:
            self._log.debug(
                "session/update outside a prompt turn",
                session_id=session_id,
                kind=update.get("sessionUpdate"),
            )
            return
        try:
            await turn.send(update)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._log.debug("session/update after its turn ended", session_id=session_id)

    async def _handle_request(self, method: str, params: Params) -> Any:
        if method == "session/request_permission":
            return self._answer_permission(object_params(method, params))
        if method == "fs/read_text_file":
            return await trio.to_thread.run_sync(
                self._workspace.read_text_file, object_params(method, params)
            )
        if method == "fs/write_text_file":
            return await trio.to_thread.run_sync(
                self._workspace.write_text_file, object_params(method, params)
            )
        if self._terminals is not None and method.startswith("terminal/"):
            return await self._terminals.handle(method, object_params(method, params))
        self._log.warning("agent called an unsupported method", method=method)
        raise MethodNotFound(method)

    def _answer_permission(self, params: dict[str, Any]) -> dict[str, Any]:
        outcome = self._permissions.choose(params.get("options"))
        tool_call = params.get("toolCall")
        self._log.info(
            "permission request answered",
            session_id=params.get("sessionId"),
            tool=tool_call.get("title") if isinstance(tool_call, dict) else None,
            mode=self._permissions.mode,
            outcome=outcome,
        )
        return {"outcome": outcome}
