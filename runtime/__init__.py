"""corral: an actor-model runtime for agent workflows on trio.

Every job is an actor that owns one trio nursery; everything the job starts lives in it, so every
way a job ends — complete, fail, abandon, cancel, timeout, shutdown — closes the nursery and
nothing it started can outlive it.

    async with open_runtime() as rt:
        job = await rt.spawn(flow, inputs={"ticket": 7})
        result = await job.wait()
"""

from .client import ControlClient, open_client
from .core.context import StepContext
from .core.events import (
    AgentSession,
    AgentUpdate,
    EscalationTimedOut,
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
    event_from_dict,
    event_to_dict,
)
from .core.handle import JobHandle, JobView
from .core.recording import RECORD_MODES, RecordMode
from .core.runtime import Runtime, RuntimeStats, open_runtime
from .core.states import (
    JobExistsError,
    JobNotFound,
    JobResult,
    JobState,
    JobStateError,
    StepState,
    StepTimeout,
)
from .flow import (
    AgentSpec,
    ExitRule,
    ExpressionError,
    Flow,
    FlowError,
    FlowInput,
    InputError,
    McpServer,
    OnError,
    SecretUnavailable,
    Step,
    TimeoutAction,
)

__all__ = [
    "RECORD_MODES",
    "AgentSession",
    "AgentSpec",
    "AgentUpdate",
    "ControlClient",
    "EscalationTimedOut",
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
    "JobView",
    "Lagged",
    "McpServer",
    "OnError",
    "RecordMode",
    "Runtime",
    "RuntimeStats",
    "SecretUnavailable",
    "Step",
    "StepCancelled",
    "StepCompleted",
    "StepContext",
    "StepFailed",
    "StepStarted",
    "StepState",
    "StepStream",
    "StepTimeout",
    "TimeoutAction",
    "event_from_dict",
    "event_to_dict",
    "open_client",
    "open_runtime",
]
