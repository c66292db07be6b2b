"""A YAML exit rule takes timeout and on_timeout; a bad one is refused naming the file, the line and
the field, like every other field."""

from __future__ import annotations

import textwrap

import pytest

from runtime import ExitRule
from runtime.cli.yaml import FlowLoadError, load_flow, load_flow_text
from runtime.flow.codec import flow_from_dict, flow_to_dict


def _flow(exit_rule: str) -> str:
    return "name: f\nsteps:\n  a:\n    command: [echo]\n    exits:\n" + textwrap.indent(
        textwrap.dedent(exit_rule), "      ")


def test_timeout_and_on_timeout_load():
    flow = load_flow_text(_flow("""\
        - name: ask
          when: "True"
          action: escalate
          timeout: 3600
          on_timeout: advance
        - name: later
          action: escalate
          timeout: 1.5e+1
        """))
    ask, later = flow.step("a").exits
    assert ask == ExitRule("ask", when="True", action="escalate", timeout=3600, on_timeout="advance")
    assert (later.timeout, later.on_timeout) == (15.0, "abandon")
    assert flow_from_dict(flow_to_dict(flow)) == flow


BAD = {
    "timeout on an advance rule": ("""\
        - name: ask
          action: advance
          timeout: 5
        """, 8, "steps.a.exits.ask.timeout", "only an escalate rule takes timeout"),
    "timeout as a string": ("""\
        - name: ask
          action: escalate
          timeout: soon
        """, 8, "steps.a.exits.ask.timeout", "expected a number, got str"),
    "negative timeout": ("""\
        - name: ask
          action: escalate
          timeout: -5
        """, 8, "steps.a.exits.ask.timeout", "positive"),
    "zero timeout": ("- {name: ask, action: escalate, timeout: 0}\n", 6, "steps.a.exits.ask.timeout", "positive"),
    "unknown on_timeout": ("""\
        - name: ask
          action: escalate
          timeout: 5
          on_timeout: faill
        """, 9, "steps.a.exits.ask.on_timeout", "did you mean 'fail'"),
    "on_timeout as a bool": ("""\
        - name: ask
          action: escalate
          timeout: 5
          on_timeout: no
        """, 9, "steps.a.exits.ask.on_timeout", "expected str, got bool"),
    "on_timeout without a timeout": ("""\
        - name: ask
          action: escalate
          on_timeout: fail
        """, 8, "steps.a.exits.ask.on_timeout", "needs a timeout"),
    "misspelt on_timeout": ("""\
        - name: ask
          action: escalate
          timeout: 5
          on_timeuot: fail
        """, 9, "steps.a.exits.ask.on_timeuot", "did you mean 'on_timeout'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_deadline_names_file_line_and_field(tmp_path, case):
    rule, line, field, fragment = BAD[case]
    path = tmp_path / "flow.yaml"
    path.write_text(_flow(rule))
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {field}: "), message
    assert (info.value.line, info.value.field) == (line, field), message
    assert fragment in message, message
