"""What a job is and ends as: its states, its result, and the errors its handle raises."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["EndState", "JobExistsError", "JobNotFound", "JobResult", "JobState", "JobStateError", "StepState", "StepTimeout", "TerminalState"]


class JobState(enum.Enum):
    """The lifecycle of a job: ``PENDING → RUNNING ⇄ PAUSED → terminal``."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Let go of by a draining runtime before it ended (``Runtime.drain``): a durable job's record
    stays live (``paused`` or ``interrupted``) and the next runtime resumes it.  Not terminal."""

    @property
    def terminal(self) -> bool:
        """The job has ended for good (not INTERRUPTED, which another runtime resumes)."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.ABANDONED, JobState.CANCELLED})


TerminalState = Literal["completed", "failed", "abandoned", "cancelled"]
"""The value of a terminal :class:`JobState`."""

EndState = Literal["completed", "failed", "abandoned", "cancelled", "interrupted"]
"""How a job ended in its runtime (as :class:`~runtime.JobFinished` carries it): a terminal state,
or ``interrupted`` when a draining runtime let go of it."""


class StepState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # failed and routed with on_error=continue (or the job failed on it)
    CANCELLED = "cancelled"


class StepTimeout(Exception):
    """A step ran longer than its ``timeout``."""


class JobNotFound(KeyError):
    """No job with this id: not live in this runtime and not in its store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job {self.job_id!r}"


class JobExistsError(ValueError):
    """``spawn(job_id=...)`` of an id that is live or already stored: nothing is run or overwritten."""

    def __init__(self, job_id: str, where: str) -> None:
        super().__init__(f"job {job_id!r} already exists ({where}); a job id is never reused")
        self.job_id = job_id


class JobStateError(RuntimeError):
    """The operation does not apply to the job's current state (e.g. resume a running job)."""


@attrs.frozen
class JobResult:
    """What is kept of a finished job.

    ``job_id`` is the job's id (``JobHandle.id``); ``flow`` the flow's name; ``state`` the terminal
    state and ``reason`` why (an exit rule's name, ``step_failed:<step>``, ``timeout``, the reason
    given to cancel/abandon, ``shutdown``); ``error`` the failure's text; ``outputs`` and ``steps``
    each step's outputs and final state; ``inputs`` the job inputs (declared defaults filled in);
    ``started_at``/``finished_at`` ``time.time()`` seconds.
    """

    job_id: str
    flow: str
    state: JobState
    reason: str | None = None
    outputs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    error: str | None = None
    steps: Mapping[str, StepState] = attrs.field(factory=dict)
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    started_at: float | None = None
    finished_at: float | None = None


def describe_error(error: BaseException) -> str:
    """``Type: message`` (or just ``Type``): how a failure reads in results and events."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name
