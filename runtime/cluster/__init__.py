"""Run corral jobs on a Ray cluster with the embedded runtime's API (optional extra ``corral[ray]``).

A backend over the public API: it imports the :mod:`runtime` facade, :mod:`runtime.testing` (each
host checks itself for leaks) and :mod:`actors`, never the kernel's internals (an import-linter
contract says so).  Flows travel to hosts cloudpickled, as Ray ships functions (see ``_ship``).
"""

from ._claim import ClusterBusy
from ._config import RayCluster
from ._handle import ClusterJobHandle
from ._open import open_cluster_runtime
from ._runtime import ClusterRuntime

__all__ = ["ClusterBusy", "ClusterJobHandle", "ClusterRuntime", "RayCluster", "open_cluster_runtime"]
