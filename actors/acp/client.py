"""An Agent Client Protocol (ACP, protocolVersion 1) client over a JSON-RPC connection.

:class:`AcpClient` speaks to one agent process through a pair of trio byte
streams (the agent's stdin and stdout). It initializes the agent, opens
sessions, runs prompt turns and streams each turn's ``session/update``
notifications to the caller, and answers the agent's own requests:

- ``session/request_permission`` according to a :class:`PermissionPolicy`
  (by default every request is rejected);
- ``fs/read_text_file`` and ``fs/write_text_file``, confined to a workspace
  directory: a path that leaves it (``..``, an absolute path elsewhere, a
  symlink pointing out) is refused with an error that says so;
- anything else with JSON-RPC -32601 (method not found).

It knows nothing of jobs: the owner runs :meth:`AcpClient.run` in its nursery
and owns the agent process.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

from .._groups import raise_lone
from ..log import get_logger
from .jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    JsonRpcConnection,
    MethodNotFound,
    ProtocolError,
    RemoteError,
)

__all__ = ["PROTOCOL_VERSION", "RESOURCE_NOT_FOUND", "AcpClient", "PermissionPolicy"]

#: The ACP protocol version this client speaks.
PROTOCOL_VERSION = 1
#: ACP error code for a missing resource (a file that does not exist).
RESOURCE_NOT_FOUND = -32002

_CLIENT_INFO = {"name": "corral", "version": "0.1.0"}
# Updates a turn may buffer ahead of a slow on_update before the reader waits.
_UPDATE_BUFFER = 64
# How long a cancelled prompt() may spend telling the agent to stop.
_CANCEL_NOTIFY_GRACE = 1.0

UpdateCallback = Callable[[dict[str, Any]], Awaitable[None] | None]

_PREFERENCES: dict[str, tuple[str, ...]] = {
    "reject": ("reject_once", "reject_always"),
    "allow": ("allow_once",),
    "allow_always": ("allow_always", "allow_once"),
}
_REJECT_KINDS = ("reject_once", "reject_always")


@attrs.frozen
class PermissionPolicy:
    """How the client answers ``session/request_permission``.

    ``mode`` picks the first offered option of a matching kind:

    - ``"reject"`` (default): ``reject_once``, else ``reject_always``;
    - ``"allow"``: ``allow_once`` (never escalates to ``allow_always``);
    - ``"allow_always"``: ``allow_always``, else ``allow_once``.

    When no option matches, a reject option is chosen if offered, otherwise the
    outcome is ``cancelled``.
    """

    mode: Literal["reject", "allow", "allow_always"] = attrs.field(
        default="reject", validator=attrs.validators.in_(("reject", "allow", "allow_always"))
    )

    def choose(self, options: Any) -> dict[str, Any]:
        """Return the ``outcome`` object answering a request that offers ``options``."""
        candidates = options if isinstance(options, list) else []
        offered = [
            option
            for option in candidates
            if isinstance(option, dict) and isinstance(option.get("optionId"), str)
        ]
        for kinds in (_PREFERENCES[self.mode], _REJECT_KINDS):
            for kind in kinds:
                for option in offered:
                    if option.get("kind") == kind:
                        return {"outcome": "selected", "optionId": option["optionId"]}
        return {"outcome": "cancelled"}


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
        request_timeout: bound on ``initialize`` and ``session/new`` (prompt
            turns are bounded by the caller, e.g. with ``trio.fail_after``).
        log: a structlog logger to log through (default: this module's).

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
        permissions: PermissionPolicy = PermissionPolicy(),
        max_line_bytes: int = 1 << 20,
        request_timeout: float | None = None,
        log: Any = None,
    ) -> None:
        self._workspace = Path(workspace).resolve()
        self._permissions = permissions
        self._log = log if log is not None else get_logger(__name__)
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
                    "terminal": False,
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

    async def new_session(self, cwd: Path | None = None) -> str:
        """Open a session (``session/new``) and return its id.

        ``cwd`` defaults to the workspace; a relative ``cwd`` is taken relative to it.
        """
        directory = self._workspace / cwd if cwd is not None else self._workspace
        result = await self._conn.request("session/new", {"cwd": str(directory), "mcpServers": []})
        session_id = result.get("sessionId") if isinstance(result, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise ProtocolError(f"agent answered session/new without a sessionId: {result!r}")
        return session_id

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

    async def _handle_notification(self, method: str, params: Any) -> None:
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

    async def _handle_request(self, method: str, params: Any) -> Any:
        if method == "session/request_permission":
            return self._answer_permission(_params(method, params))
        if method == "fs/read_text_file":
            return await trio.to_thread.run_sync(self._read_text_file, _params(method, params))
        if method == "fs/write_text_file":
            return await trio.to_thread.run_sync(self._write_text_file, _params(method, params))
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

    def _confine(self, params: dict[str, Any]) -> Path:
        """Resolve the request's path; refuse anything outside the workspace."""
        raw = params.get("path")
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise RemoteError(INVALID_PARAMS, f"path must be a non-empty string, got {raw!r}")
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self._workspace / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:
            raise RemoteError(INVALID_PARAMS, f"refused: cannot resolve {raw!r}: {exc}") from None
        if not resolved.is_relative_to(self._workspace):
            self._log.warning("fs request outside the workspace refused", path=raw)
            raise RemoteError(
                INVALID_PARAMS,
                f"refused: {raw!r} is outside the workspace {str(self._workspace)!r}",
                {"path": raw, "workspace": str(self._workspace)},
            )
        return resolved

    def _read_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self._confine(params)
        line = _optional_count(params, "line")
        limit = _optional_count(params, "limit")
        try:
            # O_NOFOLLOW: a symlink swapped in after the check is not followed
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, encoding="utf-8", newline="") as file:
                if line is None and limit is None:
                    content = file.read()
                else:
                    first = max(line or 1, 1) - 1
                    stop = None if limit is None else first + limit
                    content = "".join(itertools.islice(file, first, stop))
        except FileNotFoundError:
            raise RemoteError(
                RESOURCE_NOT_FOUND, f"file not found: {params['path']!r}", {"path": params["path"]}
            ) from None
        except UnicodeDecodeError:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot read {params['path']!r}: not UTF-8 text"
            ) from None
        except OSError as exc:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot read {params['path']!r}: {exc.strerror}"
            ) from None
        return {"content": content}

    def _write_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self._confine(params)
        content = params.get("content")
        if not isinstance(content, str):
            raise RemoteError(
                INVALID_PARAMS, f"content must be a string, got {type(content).__name__}"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(fd, "w", encoding="utf-8", newline="") as file:
                file.write(content)
        except OSError as exc:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot write {params['path']!r}: {exc.strerror}"
            ) from None
        return {}


def _params(method: str, params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise RemoteError(INVALID_PARAMS, f"{method} params must be an object, got {params!r}")
    return params


def _optional_count(params: dict[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RemoteError(INVALID_PARAMS, f"{key} must be a non-negative integer, got {value!r}")
    return value
