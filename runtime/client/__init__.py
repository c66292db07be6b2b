"""Steer jobs by id from outside the process that runs them: :func:`open_client`."""

from ._client import ControlClient as ControlClient
from ._client import open_client as open_client

__all__ = ["ControlClient", "open_client"]
