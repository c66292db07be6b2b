"""One controller at a time: the named actor through which a controller holds a named cluster."""

from __future__ import annotations

import os
import socket
import time
from typing import TypedDict

from actors.log import get_logger

from ._config import RayCluster
from ._ray import ActorHandle, Ray

log = get_logger(__name__)


class Holder(TypedDict):
    """Who holds a named cluster: the controller's pid, its host name, since when (epoch s)."""

    pid: int
    host: str
    since: float


class ClusterBusy(RuntimeError):
    """A named cluster is held by another live controller (``holder``: its pid, host, since)."""

    def __init__(self, name: str, holder: Holder | None, waited: float) -> None:
        who = "another controller" if holder is None else \
            f"the controller pid {holder.get('pid')} on {holder.get('host')}"
        super().__init__(f"cluster {name!r} is held by {who} (waited {waited:g}s for it to end): "
                         "one controller at a time; detach() or end that one first")
        self.name = name
        self.holder: Holder | None = None if holder is None else Holder(**holder)


class _Claim:
    """The named actor through which one controller holds a named cluster."""

    def __init__(self, holder: Holder) -> None:
        self._holder = holder

    def holder(self) -> Holder:
        return self._holder


def claim(ray: Ray, cluster: RayCluster) -> ActorHandle:
    """Take ``<name>-controller`` (blocking), waiting up to ``attach_timeout`` for a holder to end."""
    name = f"{cluster.name}-controller"
    cls = ray.remote(num_cpus=0, max_restarts=0)(_Claim)
    holder = Holder(pid=os.getpid(), host=socket.gethostname(), since=time.time())
    start = time.monotonic()
    while True:
        try:
            actor = cls.options(name=name, namespace=cluster.namespace).remote(holder)
            if ray.get(actor.holder.remote()) == holder:
                if time.monotonic() - start > 0.1:
                    log.info("corral.cluster.claimed_after_wait", cluster=cluster.name,
                             waited=round(time.monotonic() - start, 2))
                return actor
        except (ValueError, ray.exceptions.RayActorError):
            pass  # the name is taken (or was, a moment ago): another controller holds the cluster
        waited = time.monotonic() - start
        if waited >= cluster.attach_timeout:
            raise ClusterBusy(cluster.name or "", _holder_of(ray, name, cluster.namespace), round(waited, 1))
        time.sleep(0.2)


def _holder_of(ray: Ray, name: str, namespace: str) -> Holder | None:
    """Who holds the claim ``name`` now (``None`` if that cannot be asked)."""
    try:
        holder: Holder = ray.get(ray.get_actor(name, namespace=namespace).holder.remote(), timeout=5)
    except Exception:
        return None
    return holder
