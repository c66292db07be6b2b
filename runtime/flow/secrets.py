"""Agent secrets: the values of :attr:`AgentSpec.env` and ``env_from`` live only in memory, and
so do those of its MCP servers (:class:`~runtime.flow.McpServer` ``env``, ``env_from`` and
``headers_from``).

The store keeps only the *names* of an agent's variables (:func:`~runtime.flow.codec.flow_to_dict`
writes ``env`` and ``env_from`` together as ``env_from``), so a flow rebuilt from the store -- a
resumed job -- reads every one of them from the environment of the runtime that resumes it.
A missing variable is a :class:`SecretUnavailable` naming it, never its value: raised by
``spawn()`` for an ``env_from`` name before anything runs or is stored, and by the agent step of
a resumed job, which then fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .model import Flow
from .step import AgentSpec

__all__ = ["SecretUnavailable", "agent_env", "mcp_servers", "require_env_from"]


class SecretUnavailable(ValueError):
    """An agent variable (``name``) that is not in the environment of this runtime."""

    def __init__(self, name: str, job_id: str | None = None) -> None:
        self.name = name
        self.job_id = job_id
        where = (f"the runtime that resumes job {job_id}" if job_id is not None
                 else "the runtime that spawns the job")
        super().__init__(f"secret {name} is not available to this runtime (set it in the environment of {where})")


def agent_env(spec: AgentSpec, environ: Mapping[str, str], job_id: str) -> dict[str, str]:
    """The variables an adapter of ``spec`` gets: ``spec.env``, then each ``env_from`` name read
    from ``environ`` (raising :class:`SecretUnavailable` for the first one missing)."""
    env = dict(spec.env)
    for name in spec.env_from:
        if name not in environ:
            raise SecretUnavailable(name, job_id)
        env[name] = environ[name]
    return env


def mcp_servers(spec: AgentSpec, environ: Mapping[str, str], job_id: str) -> list[dict[str, Any]]:
    """The ACP ``mcpServers`` of ``spec``: each server's ``env``, then its ``env_from`` and
    ``headers_from`` variables read from ``environ`` (:class:`SecretUnavailable` for the first
    one missing)."""
    for server in spec.mcp_servers:
        for name in server.secret_names:
            if name not in environ:
                raise SecretUnavailable(name, job_id)
    return [server.to_acp(environ) for server in spec.mcp_servers]


def _names(spec: AgentSpec) -> Iterator[str]:
    yield from spec.env_from
    for server in spec.mcp_servers:
        yield from server.secret_names


def require_env_from(flow: Flow, environ: Mapping[str, str]) -> None:
    """Raise :class:`SecretUnavailable` for the first ``env_from`` name of ``flow``'s agent steps
    (theirs and their MCP servers') missing from ``environ`` (what ``spawn()`` checks before
    anything runs or is stored)."""
    for step in flow.steps:
        for name in _names(step.agent) if step.agent is not None else ():
            if name not in environ:
                raise SecretUnavailable(name)
