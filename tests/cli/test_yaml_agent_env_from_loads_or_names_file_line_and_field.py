"""A YAML agent spec takes ``env_from: [NAME, ...]`` (variables copied from the runtime's
environment); a wrong one is refused with the file, line and field.  ``corral run`` refuses a flow
whose ``env_from`` variable is missing before anything runs, naming the variable."""

from __future__ import annotations

import textwrap

import pytest
from cli_support import corral

from runtime.cli.yaml import FlowLoadError, load_flow

FLOW = """\
name: f
steps:
  a:
    agent:
      command: [python, -m, actors.fake_agent]
      env: {MODE: test}
      env_from: {env_from}
    prompt: hi
"""


def _write(tmp_path, env_from: str):
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(FLOW).replace("{env_from}", env_from))
    return path




def test_env_from_names_load(tmp_path):
    agent = load_flow(_write(tmp_path, "[ANTHROPIC_API_KEY, OTHER_TOKEN]")).steps[0].agent
    assert agent is not None
    assert agent.env_from == ("ANTHROPIC_API_KEY", "OTHER_TOKEN") and dict(agent.env) == {"MODE": "test"}
    one = load_flow(_write(tmp_path, "ANTHROPIC_API_KEY")).steps[0].agent  # one name, as for after:
    assert one is not None and one.env_from == ("ANTHROPIC_API_KEY",)


@pytest.mark.parametrize("env_from, fragment", [
    ("[MODE]", "MODE is also given a value in env"),
    ("[A, A]", "names a variable twice"),
    ("['']", "is not a variable name"),
    ("{A: 1}", ""),
])
def test_a_bad_env_from_names_file_line_and_field(tmp_path, env_from, fragment):
    path = _write(tmp_path, env_from)
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    message = str(info.value)
    assert message.startswith(f"{path}:7: steps.a.agent.env_from: "), message
    assert fragment in message, message


def test_corral_run_refuses_a_missing_env_from_variable_before_running(tmp_path):
    path = _write(tmp_path, "[CORRAL_TEST_SURELY_UNSET_VARIABLE]")
    store = tmp_path / "s.db"
    out = corral("run", path, "--store", store)
    assert out.returncode == 2, out.stderr
    assert "secret CORRAL_TEST_SURELY_UNSET_VARIABLE is not available to this runtime" in out.stderr
    assert not store.exists()
