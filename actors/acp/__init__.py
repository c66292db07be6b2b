"""Agents over ACP: JSON-RPC framing, the ACP client, and the adapter that runs an agent CLI.

Layers, each importing only those before it::

    jsonrpc    newline-delimited JSON-RPC 2.0 over a pair of trio streams
    client     the ACP client side (initialize, sessions, prompts, permission requests)
    adapter    an agent subprocess in its own process group, with a client on its stdio
"""

from .adapter import AgentAdapter as AgentAdapter
from .client import AcpClient as AcpClient
from .client import PermissionPolicy as PermissionPolicy
from .client import UpdateCallback as UpdateCallback
from .jsonrpc import JsonRpcConnection as JsonRpcConnection
from .jsonrpc import MethodNotFound as MethodNotFound
from .jsonrpc import ProtocolError as ProtocolError
from .jsonrpc import RemoteError as RemoteError
