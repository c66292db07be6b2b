"""corral: an actor-model runtime for agent workflows on trio.

Every job is an actor that owns one trio nursery; everything the job starts lives in it, so every
way a job ends — complete, fail, abandon, cancel, timeout, shutdown — closes the nursery and
nothing it started can outlive it.

    async with open_runtime() as rt:
        job = await rt.spawn(flow, inputs={"ticket": 7})
        result = await job.wait()
"""

from .context import StepContext
from .events import (
    Event,
    ExitResolved,
    JobFinished,
    JobPaused,
    JobResumed,
    JobStarted,
    Lagged,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
    StepStream,
)
from .flow import AgentSpec, ExitRule, Flow, FlowError, FlowInput, InputError, OnError, Step
from .job import (
    JobExistsError,
    JobHandle,
    JobNotFound,
    JobResult,
    JobState,
    JobStateError,
    StepState,
    StepTimeout,
)
from .rules import ExpressionError
from .runtime import Runtime, RuntimeStats, open_runtime

__all__ = [
    "AgentSpec",
    "Event",
    "ExitResolved",
    "ExitRule",
    "ExpressionError",
    "Flow",
    "FlowError",
    "FlowInput",
    "InputError",
    "JobExistsError",
    "JobFinished",
    "JobHandle",
    "JobNotFound",
    "JobPaused",
    "JobResult",
    "JobResumed",
    "JobStarted",
    "JobState",
    "JobStateError",
    "Lagged",
    "OnError",
    "Runtime",
    "RuntimeStats",
    "Step",
    "StepCancelled",
    "StepCompleted",
    "StepContext",
    "StepFailed",
    "StepStarted",
    "StepState",
    "StepStream",
    "StepTimeout",
    "open_runtime",
]
