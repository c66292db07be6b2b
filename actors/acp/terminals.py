"""ACP terminals: commands an agent runs through its client (``terminal/*``), each one contained.

A :class:`Terminals` manager belongs to one agent adapter and runs in the adapter's nursery
(``await nursery.start(terminals.run)``).  Each terminal is a :class:`~actors.process.ProcessGroup`
of its own -- own session, the adapter's job marker with a group id of its own, the keeper's
lifeline -- started in the manager's nursery, so when the adapter stops, every terminal's tree is
torn down with it (SIGTERM, grace, SIGKILL, marked escapers), whatever the agent did or did not
release.  ``on_group`` hears each group start and end, like the adapter's own.

- ``terminal/create`` runs ``command`` with ``args`` (no shell), stdout and stderr merged, stdin
  empty, in ``cwd`` (default: the workspace; one outside it -- symlinks resolved -- is refused),
  with the adapter's environment plus ``env``.  At most ``max_terminals`` are held (created and
  not released).
- ``terminal/output`` gives ``{output, truncated, exitStatus?}``: the last ``outputByteLimit``
  bytes (at most the manager's ``output_byte_limit``), cut at a UTF-8 character boundary.
- ``terminal/wait_for_exit`` parks until the command ends: ``{exitCode, signal}``.
- ``terminal/kill`` tears the tree down; the terminal stays, for its output.
- ``terminal/release`` kills it if it runs and forgets its id.

A terminal is only reachable from the session that created it, and only while that session's
prompt turn runs: :meth:`Terminals.release_session` (the adapter calls it when the turn ends) kills
and forgets the session's terminals.  A bad request is answered with a JSON-RPC error naming the
field; the connection and the job go on.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._groups import raise_lone
from ..log import EventLogger, get_logger
from ..process import MARKER_ENV, Marker, ProcessGroup
from .errors import INTERNAL_ERROR, INVALID_PARAMS, MethodNotFound, RemoteError
from .termio import OutputBuffer, exit_status
from .workspace import RESOURCE_NOT_FOUND

__all__ = ["METHODS", "TerminalLimits", "Terminals"]

METHODS = ("terminal/create", "terminal/output", "terminal/wait_for_exit", "terminal/kill", "terminal/release")
"""The ``terminal/*`` methods a :class:`Terminals` manager serves."""

_CHUNK = 65536
# stdout and stderr merged, stdin empty; "$@" is the command and its args, run without a shell
_WRAPPER = ("/bin/sh", "-c", 'exec "$@" 2>&1 </dev/null', "corral-terminal")


@attrs.frozen
class TerminalLimits:
    """How much one adapter's terminals may hold.

    ``max_terminals``: terminals held at once (created, not yet released).  ``output_byte_limit``:
    output bytes kept per terminal -- the default, and the cap on a request's ``outputByteLimit``.
    """

    max_terminals: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    output_byte_limit: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(0))


@attrs.define(eq=False)
class _Terminal:
    id: str
    session_id: str
    command: str
    group: ProcessGroup
    output: OutputBuffer
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    ended: trio.Event = attrs.Factory(trio.Event)
    status: dict[str, Any] | None = None


def _invalid(method: str, message: str, data: Any = None) -> RemoteError:
    return RemoteError(INVALID_PARAMS, f"{method}: {message}", data)


def _text(method: str, field: str, value: Any, *, empty: bool = False) -> str:
    if isinstance(value, str) and (empty or value) and "\x00" not in value:
        return value
    kind = "a string" if empty else "a non-empty string"
    got = ("an empty string" if not value else "a string with a NUL byte") if isinstance(value, str) \
        else type(value).__name__
    raise _invalid(method, f"{field} must be {kind} without NUL bytes, got {got}", {"field": field})


def _args(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid("terminal/create", f"args must be a list of strings, got {type(value).__name__}",
                       {"field": "args"})
    return [_text("terminal/create", f"args[{i}]", arg, empty=True) for i, arg in enumerate(value)]


def _env(value: Any) -> dict[str, str]:
    """The request's variables; a value never appears in an error (it may be a secret)."""
    if value is None:
        return {}
    method = "terminal/create"
    if not isinstance(value, list):
        raise _invalid(method, f"env must be a list of {{name, value}}, got {type(value).__name__}", {"field": "env"})
    env: dict[str, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(method, f"env[{i}] must be an object {{name, value}}", {"field": f"env[{i}]"})
        name = _text(method, f"env[{i}].name", item.get("name"))
        if "=" in name or name == MARKER_ENV:
            why = "is reserved" if name == MARKER_ENV else "contains '='"
            raise _invalid(method, f"env[{i}].name {name!r} {why}", {"field": f"env[{i}].name"})
        if not isinstance(item.get("value"), str) or "\x00" in item["value"]:
            raise _invalid(method, f"env[{i}].value (of {name}) must be a string without NUL",
                           {"field": f"env[{i}].value"})
        env[name] = item["value"]
    return env


def _byte_limit(value: Any, cap: int) -> int:
    if value is None:
        return cap
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _invalid("terminal/create", f"outputByteLimit must be a non-negative integer, got {value!r}",
                       {"field": "outputByteLimit"})
    return min(value, cap)


def _resolve_command(command: str, env: Mapping[str, str], cwd: Path) -> None:
    if os.sep in command:
        path = cwd / command
        if path.is_file() and os.access(path, os.X_OK):
            return
    elif shutil.which(command, path=env.get("PATH", os.defpath)) is not None:
        return
    raise RemoteError(RESOURCE_NOT_FOUND, f"terminal/create: command {command!r} not found "
                      f"(not an executable file, nor on PATH)", {"field": "command", "command": command})


class Terminals:
    """The ``terminal/*`` requests of one agent, each terminal a contained process group.

    Args:
        marker: the adapter's marker; each terminal's group gets it with a group id of its own.
        workspace: the default ``cwd``, and the directory a ``cwd`` must lie in.
        env: variables every terminal gets on top of the runtime's environment (the adapter's).
        sessions: the sessions whose turn runs now (a live view, e.g. the adapter's set).
        on_group: called with ``(group, True)`` once a terminal's group started, ``(group, False)``
            once it is gone.
        term_grace: seconds between SIGTERM and SIGKILL when a terminal's tree is torn down (its
            stdin is empty from the start, so there is no stdin grace).
        limits: how many terminals, how much output each.
    """

    def __init__(self, *, marker: Marker, workspace: Path, sessions: Collection[str],
                 env: Mapping[str, str] | None = None,
                 on_group: Callable[[ProcessGroup, bool], None] | None = None,
                 term_grace: float = 2.0, limits: TerminalLimits | None = None,
                 log: EventLogger | None = None) -> None:
        self._marker = marker
        self._root = Path(workspace).resolve()
        self._sessions = sessions
        self._env = dict(env) if env is not None else {}
        self._on_group = on_group
        self._term_grace = term_grace
        self.limits = limits if limits is not None else TerminalLimits()
        self._log: EventLogger = log if log is not None else get_logger(__name__)
        self._terminals: dict[str, _Terminal] = {}
        self._nursery: trio.Nursery | None = None

    def __len__(self) -> int:
        """Terminals held (created and not released)."""
        return len(self._terminals)

    def output_held(self) -> int:
        """Output bytes the held terminals keep, in all."""
        return sum(len(t.output) for t in self._terminals.values())

    def output_received(self) -> int:
        """Output bytes the held terminals' commands wrote, kept or dropped."""
        return sum(t.output.received for t in self._terminals.values())

    def live_processes(self) -> int:
        """Live processes of the held terminals' trees (blocking: walks the process table)."""
        return sum(t.group.live_processes() for t in self._terminals.values() if not t.ended.is_set())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the terminals' nursery until cancelled; then every terminal is torn down."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._terminals.clear()

    async def handle(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one ``terminal/*`` request (``params`` an object); RemoteError when refused."""
        if method not in METHODS:
            raise MethodNotFound(method)
        session_id = self._session(method, params)
        if method == "terminal/create":
            return await self._create(session_id, params)
        terminal = self._find(method, session_id, params)
        if method == "terminal/output":
            await trio.lowlevel.checkpoint()
            answer: dict[str, Any] = {"output": terminal.output.text(final=terminal.ended.is_set()),
                                      "truncated": terminal.output.truncated}
            if terminal.status is not None:
                answer["exitStatus"] = terminal.status
            return answer
        if method == "terminal/wait_for_exit":
            await terminal.ended.wait()
            assert terminal.status is not None
            return dict(terminal.status)
        if method == "terminal/kill":
            await terminal.group.terminate()
            await terminal.ended.wait()
            return {}
        del self._terminals[terminal.id]  # terminal/release
        terminal.scope.cancel()
        await terminal.ended.wait()
        self._log.info("terminal released", terminal_id=terminal.id, session_id=session_id)
        return {}

    def release_session(self, session_id: str) -> None:
        """Kill and forget every terminal of ``session_id`` (its turn ended); they die in the
        manager's nursery, bounded, without waiting here."""
        for terminal in [t for t in self._terminals.values() if t.session_id == session_id]:
            del self._terminals[terminal.id]
            terminal.scope.cancel()

    # -- internals ------------------------------------------------------------------------------

    def _session(self, method: str, params: dict[str, Any]) -> str:
        session_id = params.get("sessionId")
        if not isinstance(session_id, str) or session_id not in self._sessions:
            raise _invalid(method, f"sessionId {session_id!r} is not a session of this agent with a "
                                   "prompt turn running", {"sessionId": session_id})
        return session_id

    def _find(self, method: str, session_id: str, params: dict[str, Any]) -> _Terminal:
        terminal_id = params.get("terminalId")
        terminal = self._terminals.get(terminal_id) if isinstance(terminal_id, str) else None
        if terminal is None or terminal.session_id != session_id:
            raise RemoteError(RESOURCE_NOT_FOUND,
                              f"{method}: unknown terminalId {terminal_id!r} in session {session_id!r} "
                              "(never created there, or released)", {"terminalId": terminal_id})
        return terminal

    def _cwd(self, value: Any) -> Path:
        if value is None:
            return self._root
        raw = _text("terminal/create", "cwd", value)
        try:
            resolved = (self._root / raw).resolve()  # an absolute raw replaces the root
        except (OSError, RuntimeError) as exc:
            raise _invalid("terminal/create", f"cannot resolve cwd {raw!r}: {exc}", {"field": "cwd"}) from None
        if not resolved.is_relative_to(self._root):
            self._log.warning("terminal cwd outside the workspace refused", cwd=raw)
            raise _invalid("terminal/create", f"cwd {raw!r} is outside the workspace {str(self._root)!r}",
                           {"field": "cwd", "cwd": raw, "workspace": str(self._root)})
        if not resolved.is_dir():
            raise _invalid("terminal/create", f"cwd {raw!r} is not a directory", {"field": "cwd", "cwd": raw})
        return resolved

    async def _create(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        command = _text("terminal/create", "command", params.get("command"))
        args = _args(params.get("args"))
        env = {**self._env, **_env(params.get("env"))}
        cwd = self._cwd(params.get("cwd"))
        limit = _byte_limit(params.get("outputByteLimit"), self.limits.output_byte_limit)
        _resolve_command(command, {**os.environ, **env}, cwd)
        cap = self.limits.max_terminals
        if len(self._terminals) >= cap:
            raise RemoteError(INVALID_PARAMS, f"terminal/create: {cap} terminals are held already, the cap "
                              f"(max_terminals={cap}): release one first", {"maxTerminals": cap})
        nursery = self._nursery
        if nursery is None:
            raise RemoteError(INTERNAL_ERROR, "terminal/create: the agent's terminals are shut down")
        group = ProcessGroup((*_WRAPPER, command, *args), marker=attrs.evolve(self._marker, group_id=uuid.uuid4().hex),
                             env=env, cwd=cwd, stdin_grace=0.0, term_grace=self._term_grace, lifeline=True)
        terminal = _Terminal(f"term-{uuid.uuid4().hex[:16]}", session_id, command, group, OutputBuffer(limit))
        self._terminals[terminal.id] = terminal  # counted against the cap while it starts
        try:
            with raise_lone():
                await nursery.start(self._run, terminal, name=f"actors.terminal:{terminal.id}")
        except OSError as exc:
            self._terminals.pop(terminal.id, None)
            raise RemoteError(INTERNAL_ERROR, f"terminal/create: cannot start {command!r}: {exc.strerror or exc}",
                              {"command": command}) from None
        except BaseException:
            self._terminals.pop(terminal.id, None)
            raise
        self._log.info("terminal created", terminal_id=terminal.id, session_id=session_id, command=command,
                       args=len(args), cwd=str(cwd), pid=group.pid)
        return {"terminalId": terminal.id}

    async def _run(self, terminal: _Terminal, *, task_status: trio.TaskStatus[None]) -> None:
        registered = False
        try:
            with terminal.scope:  # cancelled by release: the group's own teardown, bounded
                async with trio.open_nursery() as nursery:
                    await nursery.start(terminal.group.run)
                    if self._on_group is not None:
                        self._on_group(terminal.group, True)
                        registered = True
                    nursery.start_soon(self._drain, terminal)
                    task_status.started()
        finally:
            if registered and self._on_group is not None:
                self._on_group(terminal.group, False)
            terminal.status = exit_status(terminal.group.returncode)
            terminal.ended.set()
            self._log.debug("terminal ended", terminal_id=terminal.id, **terminal.status)

    async def _drain(self, terminal: _Terminal) -> None:
        """Read the merged output to its end into the bounded buffer (never stops reading)."""
        stream = terminal.group.stdout
        try:
            while chunk := await stream.receive_some(_CHUNK):
                terminal.output.append(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

