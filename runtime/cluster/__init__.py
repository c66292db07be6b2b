"""Run corral jobs on a Ray cluster with the embedded runtime's API (optional extra ``corral[ray]``)."""

from ._controller import (
    ClusterBusy,
    ClusterJobHandle,
    ClusterRuntime,
    RayCluster,
    open_cluster_runtime,
)

__all__ = ["ClusterBusy", "ClusterJobHandle", "ClusterRuntime", "RayCluster", "open_cluster_runtime"]
