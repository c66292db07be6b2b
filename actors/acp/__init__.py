"""Agents over ACP: JSON-RPC framing, the ACP client, and the adapter that runs an agent CLI.

Layers, each importing only those before it::

    errors       ProtocolError (the peer is broken), RemoteError / MethodNotFound (one request)
    messages     one JSON-RPC 2.0 message per line: parsed whole or refused whole
    jsonrpc      newline-delimited JSON-RPC 2.0 over a pair of trio streams
    permissions  how session/request_permission is answered
    workspace    fs/read_text_file and fs/write_text_file, confined to one directory
    termio       a terminal's bounded output (cut at a UTF-8 boundary) and its exit status
    terminals    terminal/*: each terminal a contained process group in the adapter's nursery
    failures     AgentError and kin: which agent failed, in which ACP phase, how, its stderr
    session      what session/new answered (id, modes)
    client       the ACP client side (initialize, sessions, prompts, the agent's requests)
    adapter      an agent subprocess in its own process group, with a client on its stdio
"""

from .adapter import AgentAdapter as AgentAdapter
from .adapter import OpenedSession as OpenedSession
from .client import AcpClient as AcpClient
from .client import UpdateCallback as UpdateCallback
from .errors import MethodNotFound as MethodNotFound
from .errors import ProtocolError as ProtocolError
from .errors import RemoteError as RemoteError
from .failures import AgentError as AgentError
from .failures import AgentProtocolError as AgentProtocolError
from .failures import AgentStartTimeout as AgentStartTimeout
from .failures import AuthRequired as AuthRequired
from .jsonrpc import JsonRpcConnection as JsonRpcConnection
from .permissions import PermissionPolicy as PermissionPolicy
from .session import Session as Session
from .terminals import TerminalLimits as TerminalLimits
from .terminals import Terminals as Terminals

__all__ = [
    "AcpClient",
    "AgentAdapter",
    "AgentError",
    "AgentProtocolError",
    "AgentStartTimeout",
    "AuthRequired",
    "JsonRpcConnection",
    "MethodNotFound",
    "OpenedSession",
    "PermissionPolicy",
    "ProtocolError",
    "RemoteError",
    "Session",
    "TerminalLimits",
    "Terminals",
    "UpdateCallback",
]
