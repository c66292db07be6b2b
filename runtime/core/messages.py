"""What is sent to a job actor: its steps' results, and cancel / abandon / resume from outside."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .steps import StepRun

__all__ = ["Abandon", "Cancel", "Control", "Message", "Resume", "StepDone", "StepError"]


@attrs.frozen(eq=False)
class StepDone:
    run: StepRun
    outputs: Mapping[str, Any]


@attrs.frozen(eq=False)
class StepError:
    run: StepRun
    error: BaseException


@attrs.frozen
class Cancel:
    """End the job CANCELLED."""

    reason: str


@attrs.frozen
class Abandon:
    """End the job ABANDONED."""

    reason: str


@attrs.frozen
class Resume:
    """Resume a PAUSED job with ``payload`` (``$resume``)."""

    payload: Any


Control = Cancel | Abandon | Resume


Message = StepDone | StepError | Control
