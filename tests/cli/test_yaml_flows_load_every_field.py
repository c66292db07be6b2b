"""YAML flows (runtime.cli.yaml): every field loads, both step layouts load alike, and a loaded
flow round-trips through the store's portable format."""

from __future__ import annotations

import sys
import textwrap

import pytest

from runtime import AgentSpec, ExitRule, OnError
from runtime.cli.yaml import FlowLoadError, load_flow, load_flow_text
from runtime.flow.codec import flow_from_dict, flow_to_dict

GOOD = """\
name: triage-fix-review
timeout: 60
steps:
  triage:
    run: examples.steps:triage
    inputs: {ticket: $job.ticket, title: $job.title}
    exits:
      - name: wontfix
        when: outputs.severity == 0
        action: abandon
  fix:
    run: examples.steps:fix
    inputs: {summary: $triage.summary}
    on_error: {action: retry, max_attempts: 3, backoff: 0.5}
    timeout: 30
  review:
    command: [python, -c, "print('{}')"]
    inputs: {patch: $fix.patch}
    exits:
      again:
        when: not outputs.approved
        action: loop
        target: fix
        max_iterations: 2
"""


def test_a_flow_loads_with_every_field():
    flow = load_flow_text(GOOD, "good.yaml")
    triage, fix, review = flow.steps
    assert flow.name == "triage-fix-review" and flow.timeout == 60
    assert triage.run.__name__ == "triage" and triage.exits[0] == ExitRule(
        "wontfix", when="outputs.severity == 0", action="abandon")
    assert fix.on_error == OnError("retry", 3, 0.5) and fix.timeout == 30
    assert flow.deps["fix"] == {"triage"} and flow.deps["review"] == {"fix"}
    assert review.command[0] == sys.executable  # a first word `python` is this interpreter
    assert review.exits[0].name == "again" and review.exits[0].max_iterations == 2


def test_steps_as_a_list_equal_steps_as_a_mapping():
    as_list = """\
name: f
steps:
  - name: a
    command: echo
  - name: b
    command: [echo, b]
    after: a
    on_error: continue
"""
    as_map = """\
name: f
steps:
  a: {command: [echo]}
  b: {command: [echo, b], after: [a], on_error: {action: continue}}
"""
    assert load_flow_text(as_list) == load_flow_text(as_map)


def test_agent_shorthand_and_prompt():
    flow = load_flow_text("""\
name: f
steps:
  ask:
    agent: [python, -m, actors.fake_agent]
    prompt: "triage {$job.ticket}"
""")
    step = flow.steps[0]
    assert step.agent.command == (sys.executable, "-m", "actors.fake_agent")
    assert step.agent.permissions == "reject"
    assert step.agent.auth is None and step.agent.start_timeout is None and step.agent.terminals is False


def test_agent_auth_and_start_timeout_load_and_round_trip():
    flow = load_flow_text("""\
name: f
steps:
  ask:
    agent: {command: [codex-acp], auth: codex-api-key, start_timeout: 90}
    prompt: hi
""")
    agent = flow.steps[0].agent
    assert agent.auth == "codex-api-key" and agent.start_timeout == 90
    assert flow_from_dict(flow_to_dict(flow)).steps[0].agent == agent


def test_agent_terminals_load_and_round_trip():
    flow = load_flow_text("""\
name: f
steps:
  ask:
    agent: {command: [codex-acp], terminals: true}
    prompt: hi
""")
    agent = flow.steps[0].agent
    assert agent.terminals is True
    assert flow_to_dict(flow)["steps"][0]["agent"]["terminals"] is True
    assert flow_from_dict(flow_to_dict(flow)).steps[0].agent == agent
    assert agent != AgentSpec(["codex-acp"])  # a spec with terminals gets an adapter of its own


def test_yaml_flow_round_trips_through_the_store_format():
    flow = load_flow_text(GOOD)
    data = flow_to_dict(flow)
    assert data["portable"] is True
    assert flow_from_dict(data) == flow


def test_load_flow_reads_a_file(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(GOOD)
    assert load_flow(path) == load_flow_text(GOOD)
    with pytest.raises(FlowLoadError) as info:
        load_flow(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(info.value) and "cannot read" in str(info.value)


def test_exponent_timeouts_and_declared_inputs_load():
    flow = load_flow_text(textwrap.dedent("""\
        name: x
        timeout: 1e3
        inputs:
          ticket: int
          title: {type: str, default: untitled}
        steps:
          a: {command: [echo], inputs: {t: $job.ticket, mode: fast, price: $$5}, timeout: 2.5e1}
        """))
    assert flow.timeout == 1000.0 and flow.step("a").timeout == 25.0
    assert flow.inputs["ticket"].type is int and flow.inputs["title"].default == "untitled"
    assert flow.step("a").literals == {"mode": "fast", "price": "$5"}
    assert flow_from_dict(flow_to_dict(flow)) == flow  # the declaration is kept for resume
