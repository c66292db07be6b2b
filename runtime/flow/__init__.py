"""Flows: what a job runs, validated when built, and the codec to and from plain data.

Layers, each importing only those before it (and nothing of :mod:`runtime.core`, the store or
the CLI; no YAML)::

    errors, templates, rules    FlowError; prompt placeholders; the safe ``when`` language
    inputs                      input references ($job.x, $resume.x, $step.x) and declared inputs
    mcp                         McpServer: the MCP servers of an agent's sessions
    step                        Step, ExitRule, OnError, AgentSpec
    model                       Flow: a DAG of steps
    document                    the plain-data model of a flow (what YAML and the store hold)
    codec                       flow <-> data (cattrs)
    secrets                     agent and MCP env: values in memory only, names in the store
"""

from .errors import FlowError as FlowError
from .inputs import NO_DEFAULT as NO_DEFAULT
from .inputs import FlowInput as FlowInput
from .inputs import InputError as InputError
from .inputs import InputRef as InputRef
from .mcp import McpServer as McpServer
from .model import Flow as Flow
from .rules import ExpressionError as ExpressionError
from .secrets import SecretUnavailable as SecretUnavailable
from .step import AgentSpec as AgentSpec
from .step import ErrorAction as ErrorAction
from .step import ExitAction as ExitAction
from .step import ExitRule as ExitRule
from .step import OnError as OnError
from .step import Step as Step
from .step import TimeoutAction as TimeoutAction
from .templates import fill_template as fill_template
