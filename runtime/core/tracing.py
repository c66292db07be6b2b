"""Optional OpenTelemetry traces of jobs: whether a runtime traces, decided once when it opens.

A runtime traces when it is given a tracer provider (``open_runtime(tracer_provider=...)``), or
when the application has set a global one (``opentelemetry.trace.set_tracer_provider``, or the
``OTEL_PYTHON_TRACER_PROVIDER`` variable).  The no-op providers (the default proxy,
``NoOpTracerProvider``) mean off.  Off costs nothing: this module never imports opentelemetry
itself -- a global provider can only have been set by code that imported ``opentelemetry.trace``,
so when that module is not loaded (and the variable is unset) there is nothing to look up -- and
a job of a runtime that does not trace gets no event observer, so its events are not even built.

When on, each job's :class:`~runtime.core.events.EventHub` gets an observer, a
:class:`~runtime.core.spans.JobSpans` fed every event as it is delivered (``spans.py``, the only
module that imports opentelemetry).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .events import Event

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["JobTracing", "job_tracing"]

_PROVIDER_VARIABLE = "OTEL_PYTHON_TRACER_PROVIDER"


class JobTracing:
    """One runtime's tracer: makes each job's span builder.  Holds no job."""

    __slots__ = ("tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def sink(self, job_id: str, flow: str) -> Callable[[Event], None]:
        """A new job's event observer, building its spans (its parent: the context current now)."""
        from .spans import JobSpans

        return JobSpans(self.tracer, job_id, flow)


def job_tracing(provider: TracerProvider | None) -> JobTracing | None:
    """The runtime's tracing: with ``provider``, else with the global provider if one is set;
    ``None`` (off) when neither is a real one.  Imports opentelemetry only when one can be set."""
    if provider is None:
        if "opentelemetry.trace" not in sys.modules and not _provider_variable():
            return None
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
    return _tracing_of(provider)


def _provider_variable() -> bool:
    return bool(os.environ.get(_PROVIDER_VARIABLE)) and importlib.util.find_spec("opentelemetry") is not None


def _tracing_of(provider: Any) -> JobTracing | None:
    from opentelemetry import trace

    if not isinstance(provider, trace.TracerProvider):
        raise TypeError(f"tracer_provider must be an opentelemetry TracerProvider, got {type(provider).__name__}")
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    try:
        version: str | None = importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return JobTracing(provider.get_tracer("corral", version))
