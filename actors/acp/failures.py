"""Errors that say which agent failed, in which ACP phase, how, and what it wrote to stderr.

An :class:`~actors.acp.AgentAdapter` turns every failure of one ACP call into an
:class:`AgentError` (or one of its subclasses) whose message names:

- the agent (its command line),
- the ACP phase (``initialize``, ``authenticate``, ``session/new``, ``session/set_mode``, ``session/prompt``),
- the JSON-RPC code and message, and the error's ``data`` (its JSON, at most 500 characters),
- the last lines of the agent's stderr.

An "authentication required" answer (ACP's JSON-RPC -32000) also lists the agent's
``authMethods`` and how to pick one.  No environment value is ever part of a message.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

import trio

from .errors import ProtocolError, RemoteError

__all__ = ["AUTH_REQUIRED", "AgentError", "AgentProtocolError", "AgentStartTimeout", "AuthRequired"]

#: ACP's JSON-RPC error code for "Authentication required".
AUTH_REQUIRED = -32000

_MAX_DATA = 500
_MAX_COMMAND = 300
_STDERR_LINES = 12
_MAX_STDERR = 1500


def agent_name(command: Sequence[str]) -> str:
    """The command line naming an agent in messages (bounded)."""
    text = shlex.join(command)
    return text if len(text) <= _MAX_COMMAND else text[: _MAX_COMMAND - 3] + "..."


def stderr_lines(tail: str) -> str:
    """The last lines of an agent's stderr, bounded; ``""`` when it wrote nothing."""
    lines = [line for line in tail.strip().splitlines() if line.strip()][-_STDERR_LINES:]
    text = "\n".join(lines)
    return text if len(text) <= _MAX_STDERR else "..." + text[-_MAX_STDERR:]


def _data_text(data: Any) -> str:
    try:
        text = json.dumps(data, default=str, ensure_ascii=False)
    except ValueError:
        text = repr(data)
    return text if len(text) <= _MAX_DATA else text[:_MAX_DATA] + "...(truncated)"


class AgentError(Exception):
    """One ACP call to an agent failed.

    Attributes: ``agent`` (its command line), ``phase`` (the ACP method), ``code`` / ``data``
    (the JSON-RPC error's, ``None`` when the failure was not an error answer), ``reason``
    (the JSON-RPC message or what went wrong) and ``stderr`` (the last lines of its stderr).
    """

    def __init__(self, agent: str, phase: str, reason: str, *, code: int | None = None,
                 data: Any = None, stderr: str = "", hint: str = "") -> None:
        super().__init__(agent, phase, reason)
        self.agent, self.phase, self.reason = agent, phase, reason
        self.code, self.data, self.stderr, self.hint = code, data, stderr, hint

    def __str__(self) -> str:
        parts = [f"agent {self.agent!r} failed in ACP {self.phase}: "
                 + (f"JSON-RPC error {self.code}: {self.reason}" if self.code is not None else self.reason)]
        if self.data is not None:
            parts.append(f"error data: {_data_text(self.data)}")
        if self.hint:
            parts.append(self.hint)
        parts.append(f"agent stderr (last lines):\n{self.stderr}" if self.stderr else "agent stderr: (empty)")
        return "; ".join(parts)

    @classmethod
    def from_remote(cls, agent: str, phase: str, exc: RemoteError, stderr: str,
                    auth_methods: Sequence[Any] = ()) -> AgentError:
        """The error for a JSON-RPC error answer (:class:`AuthRequired` for -32000)."""
        if exc.code == AUTH_REQUIRED:
            return AuthRequired(agent, phase, exc.message, code=exc.code, data=exc.data, stderr=stderr,
                                methods=auth_methods)
        return cls(agent, phase, exc.message, code=exc.code, data=exc.data, stderr=stderr)


class AuthRequired(AgentError):
    """The agent answered "Authentication required" (JSON-RPC -32000).

    ``methods`` holds the ``(id, name)`` of each ``authMethods`` entry the agent advertised.
    """

    def __init__(self, agent: str, phase: str, reason: str, *, methods: Sequence[Any] = (),
                 **kw: Any) -> None:
        self.methods: tuple[tuple[str, str], ...] = tuple(
            (str(m.get("id")), str(m.get("name", m.get("id")))) for m in methods
            if isinstance(m, dict) and m.get("id"))
        if self.methods:
            listed = ", ".join(f"{mid!r} ({name})" for mid, name in self.methods)
            hint = (f"the agent needs authentication; its authMethods are {listed}; pick one with "
                    f'AgentSpec(auth="<id>") or `auth: <id>` in a YAML agent step')
        else:
            hint = ("the agent needs authentication but advertised no authMethods: give it its "
                    "credentials (a login or an API key in the agent's env)")
        super().__init__(agent, phase, reason, hint=hint, **kw)


class AgentProtocolError(AgentError, ProtocolError):
    """The connection to the agent broke (a :class:`ProtocolError`) during one ACP phase."""


class AgentStartTimeout(AgentError, trio.TooSlowError):
    """The agent did not answer ``initialize`` / ``authenticate`` / ``session/new`` within
    ``start_timeout``."""

    @classmethod
    def waiting(cls, command: Sequence[str], phase: str, timeout: float, done: Sequence[str],
                stderr: str) -> AgentStartTimeout:
        answered = f" ({', '.join(done)} answered)" if done else ""
        hint = ""
        if command and command[0].rsplit("/", 1)[-1] in ("npx", "npx.cmd"):
            hint = ("the command is npx: a first run may be downloading the package; `npm install` it "
                    "first, or raise start_timeout")
        return cls(agent_name(command), phase,
                   f"no answer to {phase} within start_timeout={timeout:g}s{answered}",
                   stderr=stderr, hint=hint)
