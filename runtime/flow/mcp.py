"""MCP servers an agent's sessions get (ACP ``session/new`` ``mcpServers``).

A stdio server (``command``, ``args``, ``env``) is started by the agent itself, so it is one of
the agent's children and dies with the agent's process tree.  An ``http`` or ``sse`` server is
reached at ``url``; its ``headers_from`` maps each header to the environment variable holding its
value.  Values are secrets, kept like :attr:`~runtime.flow.AgentSpec.env`: in memory only, the
store keeps the names (a resumed job reads them from its runtime's environment), ``repr`` shows
``env`` redacted (see :mod:`runtime.flow.secrets`).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from .errors import FlowError

__all__ = ["MCP_TRANSPORTS", "McpServer", "McpTransport"]

McpTransport = Literal["stdio", "http", "sse"]
"""How the agent reaches an MCP server."""
MCP_TRANSPORTS: tuple[McpTransport, ...] = typing.get_args(McpTransport)


def _pairs(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else (value or ())
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _redacted(env: tuple[tuple[str, str], ...]) -> str:
    return repr({name: "***" for name, _ in env})


def _is_var_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "=" not in name and "\x00" not in name


@attrs.frozen
class McpServer:
    """One MCP server for the agent: stdio (``command``) or ``http`` / ``sse`` (``url``).

    ``transport`` defaults to ``stdio`` when a ``command`` is given, else ``http``.  ``env`` gives
    a stdio server's variables by value, ``env_from`` names variables copied from the runtime's
    environment when the adapter starts; ``headers_from`` maps an http/sse header to the variable
    holding its value.  Invalid fields raise :class:`~runtime.flow.FlowError` naming them.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = attrs.field(factory=tuple, converter=_strings)
    env: tuple[tuple[str, str], ...] = attrs.field(factory=tuple, converter=_pairs, repr=_redacted)
    env_from: tuple[str, ...] = attrs.field(factory=tuple, converter=_strings)
    url: str | None = None
    transport: McpTransport | None = None
    headers_from: tuple[tuple[str, str], ...] = attrs.field(factory=tuple, converter=_pairs)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FlowError("mcp_server.name", f"must be a non-empty string, got {self.name!r}")
        if self.transport is None and self.command is None and self.url is None:
            raise self._bad("command", "an MCP server needs a command (stdio) or a url (http, sse)")
        if self.transport is None:
            object.__setattr__(self, "transport", "stdio" if self.command is not None else "http")
        if self.transport not in MCP_TRANSPORTS:
            raise FlowError(f"mcp_server[{self.name!r}].transport",
                            f"{self.transport!r} is not one of {', '.join(MCP_TRANSPORTS)}")
        if self.transport == "stdio":
            self._check_stdio()
        else:
            self._check_remote()

    def _bad(self, field: str, problem: str) -> FlowError:
        return FlowError(f"mcp_server[{self.name!r}].{field}", problem)

    def _check_stdio(self) -> None:
        if not isinstance(self.command, str) or not self.command:
            raise self._bad("command", "a stdio MCP server needs a command (a non-empty string)")
        if not all(isinstance(a, str) for a in self.args):
            raise self._bad("args", "must be a list of strings")
        for field in ("url", "headers_from"):
            if getattr(self, field):
                raise self._bad(field, f"only an http or sse MCP server takes {field} (this one is stdio)")
        given = {name for name, _ in self.env}
        for name in (*given, *self.env_from):
            if not _is_var_name(name):
                raise self._bad("env" if name in given else "env_from", f"{name!r} is not a variable name")
        for name in self.env_from:
            if name in given:
                raise self._bad("env_from", f"{name} is also given a value in env")
        if len(set(self.env_from)) != len(self.env_from):
            raise self._bad("env_from", "names a variable twice")

    def _check_remote(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise self._bad("url", f"an {self.transport} MCP server needs an http(s) url, got {self.url!r}")
        for field in ("command", "args", "env", "env_from"):
            if getattr(self, field):
                raise self._bad(field, f"only a stdio MCP server takes {field} (this one is {self.transport})")
        for header, var in self.headers_from:
            if not header or not _is_var_name(var):
                raise self._bad("headers_from", f"{header!r}: {var!r} is not a header and a variable name")

    @property
    def secret_names(self) -> tuple[str, ...]:
        """The environment variables this server reads from the runtime (``env_from`` and
        ``headers_from``'s variables)."""
        return (*self.env_from, *(var for _, var in self.headers_from))

    def to_acp(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The ACP ``McpServer`` object, every ``env_from`` / ``headers_from`` variable read from
        ``environ`` (a missing one is a ``KeyError`` naming it)."""
        if self.transport == "stdio":
            env = [*self.env, *((name, environ[name]) for name in self.env_from)]
            return {"name": self.name, "command": self.command, "args": list(self.args),
                    "env": [{"name": k, "value": v} for k, v in env]}
        return {"type": self.transport, "name": self.name, "url": self.url,
                "headers": [{"name": h, "value": environ[var]} for h, var in self.headers_from]}

    def stored(self) -> McpServer:
        """This server as the store keeps it: ``env`` values dropped, their names in ``env_from``."""
        if not self.env:
            return self
        names = tuple(sorted({*(name for name, _ in self.env), *self.env_from}))
        return attrs.evolve(self, env=(), env_from=names)
