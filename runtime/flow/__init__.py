"""Flows: what a job runs, validated when built, and the codec to and from plain data.

Layers, each importing only those before it (and nothing of :mod:`runtime.core`, the store or
the CLI; no YAML)::

    errors, templates, rules    FlowError; prompt placeholders; the safe ``when`` language
    inputs                      input references ($job.x, $resume.x, $step.x) and declared inputs
    model                       Flow, Step, ExitRule, OnError, AgentSpec
    codec                       flow <-> dict (cattrs): the YAML document model and stored flows
"""

from .errors import FlowError as FlowError
from .inputs import NO_DEFAULT as NO_DEFAULT
from .inputs import FlowInput as FlowInput
from .inputs import InputError as InputError
from .inputs import InputRef as InputRef
from .model import AgentSpec as AgentSpec
from .model import ExitRule as ExitRule
from .model import Flow as Flow
from .model import OnError as OnError
from .model import Step as Step
from .rules import ExpressionError as ExpressionError
from .templates import fill_template as fill_template
