"""A YAML agent takes ``mode`` and ``mcp_servers`` (stdio: command/args/env/env_from; http/sse:
url/headers_from); they round-trip through the store's format with every MCP env value dropped
(its name kept in ``env_from``), and a wrong one is refused with the file, line and field."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from runtime import McpServer
from runtime.cli.yaml import FlowLoadError, load_flow
from runtime.flow.codec import flow_from_dict, flow_to_dict

FLOW = """\
name: f
steps:
  a:
    agent:
      command: [python, -m, actors.fake_agent]
      mode: code
      mcp_servers:
        - name: files
          command: python
          args: [-m, files_server]
          env: {FILES_TOKEN: tok-VALUE-1}
          env_from: [HOME_DIR]
        - name: web
          transport: sse
          url: https://mcp.example/sse
          headers_from: {Authorization: WEB_TOKEN}
    prompt: hi
"""


def _write(tmp_path, text: str = FLOW):
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_mode_and_mcp_servers_load_and_round_trip_without_env_values(tmp_path):
    agent = load_flow(_write(tmp_path)).steps[0].agent
    assert agent is not None and agent.mode == "code"
    files, web = agent.mcp_servers
    assert files == McpServer("files", sys.executable, ["-m", "files_server"], {"FILES_TOKEN": "tok-VALUE-1"},
                              ["HOME_DIR"])  # a command `python` is this interpreter
    assert files.transport == "stdio" and "tok-VALUE-1" not in repr(agent)
    assert web == McpServer("web", url="https://mcp.example/sse", transport="sse",
                            headers_from={"Authorization": "WEB_TOKEN"})
    flow = load_flow(_write(tmp_path))
    stored = flow_to_dict(flow)
    assert "tok-VALUE-1" not in json.dumps(stored)
    back = flow_from_dict(json.loads(json.dumps(stored))).steps[0].agent
    assert back is not None and back.mode == "code"
    assert back.mcp_servers[0].env == () and back.mcp_servers[0].env_from == ("FILES_TOKEN", "HOME_DIR")
    assert back.mcp_servers[1] == web
    assert flow_from_dict(flow_to_dict(flow, env_values=True)) == flow  # in memory, values kept


@pytest.mark.parametrize("old, new, line, field, fragment", [
    ("mode: code", "mode: ''", 6, "steps.a.agent.mode", "must be a mode id"),
    ("mode: code", "mode: [a]", 6, "steps.a.agent.mode", "expected str"),
    ("          command: python\n", "", 8, "steps.a.agent.mcp_servers[0].command",
     "needs a command (stdio) or a url (http, sse)"),
    ("args: [-m, files_server]", "args: 7", 10, "steps.a.agent.mcp_servers[0].args", "list of strings"),
    ("env_from: [HOME_DIR]", "env_from: [FILES_TOKEN]", 12, "steps.a.agent.mcp_servers[0].env_from",
     "FILES_TOKEN is also given a value in env"),
    ("url: https://mcp.example/sse", "url: ftp://x", 15, "steps.a.agent.mcp_servers[1].url", "http(s) url"),
    ("transport: sse", "transport: pipe", 14, "steps.a.agent.mcp_servers[1].transport",
     "'pipe' is not one of stdio, http, sse"),
    ("          transport: sse\n", "          transport: sse\n          command: x\n", 15,
     "steps.a.agent.mcp_servers[1].command", "only a stdio MCP server takes command"),
    ("- name: web", "- name: files", 7, "steps.a.agent.mcp_servers", "names an MCP server twice"),
    ("          url: https://mcp.example/sse\n", "          url: https://mcp.example/sse\n          port: 1\n",
     16, "steps.a.agent.mcp_servers[1].port", "unknown field 'port'"),
])
def test_a_bad_mode_or_mcp_server_names_file_line_and_field(tmp_path, old, new, line, field, fragment):
    assert old in FLOW
    path = _write(tmp_path, FLOW.replace(old, new))
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {field}: "), message
    assert fragment in message, message
