"""Where a cluster runtime runs and how wide: :class:`RayCluster`."""

from __future__ import annotations

import attrs


@attrs.frozen
class RayCluster:
    """Where and how wide: ``hosts`` actors, each running up to ``jobs_per_host`` jobs.

    ``address``: ``None`` starts a local Ray; ``"auto"`` joins the cluster started on this machine
    (``ray start --head``); ``"ray://host:10001"`` connects through Ray Client.

    ``name``: ``None`` gives anonymous hosts owned by this controller; they die with it.  A name
    makes the hosts named, detached actors ``<name>-host-<i>`` in ``namespace``.  A controller that
    opens the same name attaches to the live ones and adopts their jobs, so a restarted controller
    carries on where the last one stopped.  :meth:`ClusterRuntime.detach` leaves them running when
    the block ends.  One controller at a time: it holds the cluster through a named actor
    ``<name>-controller`` that lives as long as its process (Ray ends it when that process dies).
    Opening a name another live controller holds waits up to ``attach_timeout`` seconds for it
    to go (a killed controller's hold ends once Ray notices), then raises :class:`ClusterBusy`.

    ``max_log_events``: each job's numbered event log (on its host, and its copy on the controller)
    keeps this many latest events; a reader asking for older ones first gets a :class:`Lagged`.
    """

    address: str | None = None
    hosts: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    jobs_per_host: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    name: str | None = None
    namespace: str = "corral"
    max_log_events: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    attach_timeout: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))

    def host_name(self, index: int) -> str | None:
        """The Ray actor name of host ``index`` (``None`` for anonymous hosts)."""
        return None if self.name is None else f"{self.name}-host-{index}"
