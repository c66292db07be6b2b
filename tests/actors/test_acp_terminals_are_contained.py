"""ACP terminals (actors.acp.terminals) driven by a real agent on the official SDK
(tests/agents/sdk_agent.mjs): each terminal runs in the workspace as a contained process group of
the adapter, its merged output and exit status come back, its output stays bounded however much
the command writes, bad requests are refused with JSON-RPC errors while the agent goes on, and
every terminal's tree dies when its turn ends or its adapter stops.

They need ``npm ci --prefix tests/agents`` (CI runs it); without it they FAIL saying so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from test_real_acp_adapters import sdk_agent

from actors.acp import AgentAdapter, AgentError, TerminalLimits
from actors.acp.termio import OutputBuffer
from actors.process import Marker, ProcessGroup, find_marked
from runtime.testing import wait_exited

BOUND = 60  # seconds: only against hangs
FLOOD = 32 << 20  # bytes a never-ending command must have written before the memory check


class Agent:
    """An adapter on sdk_agent.mjs, with the groups it reported and the text of each turn."""

    def __init__(self, adapter: AgentAdapter, groups: list[tuple[ProcessGroup, bool]],
                 stop: trio.CancelScope) -> None:
        self.adapter = adapter
        self.groups = groups
        self.stop = stop  # cancel: the adapter stops
        self.changed = trio.Event()  # set whenever a group starts or ends
        self.said: list[str] = []
        self.heard = trio.Event()  # set on every message chunk

    def on_update(self, update: dict[str, Any]) -> None:
        if update.get("sessionUpdate") == "agent_message_chunk":
            self.said.append(update["content"]["text"])
            self.heard.set()
            self.heard = trio.Event()

    async def prompt(self, text: str) -> str:
        self.said.clear()
        stop = await self.adapter.prompt(text, self.on_update)
        assert stop == "end_turn", (stop, self.text)
        return self.text

    @property
    def text(self) -> str:
        return "".join(self.said)

    async def until_said(self, pattern: str) -> re.Match[str]:
        while (found := re.search(pattern, self.text)) is None:
            await self.heard.wait()
        return found

    def on_group(self, group: ProcessGroup, live: bool) -> None:
        self.groups.append((group, live))
        self.changed.set()
        self.changed = trio.Event()

    async def until_gone(self, group: ProcessGroup) -> None:
        """Until ``group`` was reported ended (its teardown is over)."""
        while (group, False) not in self.groups:
            await self.changed.wait()

    def terminal_groups(self) -> list[ProcessGroup]:
        return [g for g, live in self.groups if live and g is not self.adapter.group]


@asynccontextmanager
async def agent(tmp_path: Path, *, terminals: bool = True, **limits: int) -> AsyncIterator[Agent]:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    reports: list[Agent] = []
    adapter = AgentAdapter(sdk_agent(), marker=Marker("rt-terminals", "job-terminals"), workspace=workspace,
                           term_grace=0.5, terminals=terminals, terminal_limits=TerminalLimits(**limits),
                           on_group=lambda group, live: reports[0].on_group(group, live))
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            reports.append(Agent(adapter, [], nursery.cancel_scope))
            await nursery.start(adapter.run)
            yield reports[0]
            nursery.cancel_scope.cancel()
    assert find_marked(lambda m: m.job_id == "job-terminals") == []


def said(text: str, key: str) -> str:
    """The value the agent said after ``key:`` (up to the next space)."""
    found = re.search(rf"{key}:(\S*)", text)
    assert found, (key, text)
    return found.group(1)


def output_of(text: str, key: str) -> str:
    found = re.search(rf'{key}:("(?:[^"\\]|\\.)*")', text)
    assert found, (key, text)
    return str(json.loads(found.group(1)))


async def test_a_terminal_runs_in_the_workspace_and_reports_its_merged_output_and_exit_code(tmp_path):
    async with agent(tmp_path) as a:
        text = await a.prompt("[[caps]] [[term:pwd; echo to-stderr >&2; printf 'é'; exit 3]]")
        assert said(text, "terminal-cap") == "true"
        assert said(text, "term-exit") == "3:null" and said(text, "term-truncated") == "false"
        assert output_of(text, "term-output") == f"{(tmp_path / 'ws').resolve()}\nto-stderr\né"
        terminal = a.terminal_groups()
        assert len(terminal) == 1 and (terminal[0], False) in a.groups  # started, and gone after release
        mark, own = terminal[0].marker, a.adapter.group.marker
        assert (mark.runtime_id, mark.job_id) == (own.runtime_id, own.job_id) and mark.group_id != own.group_id
        text = await a.prompt("[[term:kill -TERM $$]]")
        assert said(text, "term-exit") == "null:SIGTERM"


async def test_terminals_disabled_answer_method_not_found_and_the_turn_goes_on(tmp_path):
    async with agent(tmp_path, terminals=False) as a:
        text = await a.prompt("[[caps]] [[term:echo hi]] still here")
        assert said(text, "terminal-cap") == "false"
        assert said(text, "term-error") == "-32601:method" and "terminal/create" in text, text
        assert text.endswith("still here") and a.adapter.terminals is None


async def test_bad_requests_are_refused_naming_the_field_and_the_agent_goes_on(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "escape").symlink_to(outside)
    kinds = ["outside", "dotdot", "symlink", "session", "nocmd", "env", "args", "limit", "unknown"]
    async with agent(tmp_path) as a:
        text = await a.prompt(" ".join(f"[[termbad:{k}]]" for k in kinds) + " still here")
        results = dict(re.findall(r"termbad:(\w+):(-?\d+):", text))
        assert results == {**dict.fromkeys(kinds, "-32602"), "nocmd": "-32002", "unknown": "-32002"}, text
        workspace = str((tmp_path / "ws").resolve())
        assert f"cwd '/' is outside the workspace '{workspace}'" in text
        assert "cwd 'escape' is outside the workspace" in text and "cwd '../..' is outside" in text
        assert "sessionId 'not-a-session'" in text and "command 'no-such-command-for-corral' not found" in text
        assert "env[0].name 'A=B'" in text and "secret-value" not in text
        assert "args[1] must be a string" in text and "outputByteLimit must be a non-negative integer" in text
        assert "unknown terminalId 'term-never-made'" in text
        assert text.endswith("still here") and a.adapter.usable
        assert a.terminal_groups() == []  # nothing was started
        text = await a.prompt("[[term:echo fine]]")  # the connection is up
        assert output_of(text, "term-output") == "fine\n"


@pytest.mark.parametrize(("command", "ends"), [("exec sleep 1000", "null:SIGTERM"),
                                              ("trap '' TERM; sleep 1000", "null:SIGKILL")])
async def test_kill_keeps_the_output_and_release_forgets_the_id(tmp_path, command, ends):
    async with agent(tmp_path) as a:
        text = await a.prompt(f"[[termkill:echo ready; {command}]]")
        assert said(text, "killed") == ends
        assert output_of(text, "kept") == "ready\n" and said(text, "after-release") == "-32002"
        (group,) = a.terminal_groups()
        assert (group, False) in a.groups and group.live_processes() == 0


async def test_an_adapter_holds_at_most_max_terminals(tmp_path):
    async with agent(tmp_path, max_terminals=3) as a:
        text = await a.prompt("[[termmany:5]]")
        assert said(text, "many") == "3" and said(text, "many-error") == "-32602:terminal/create:"
        assert "3 terminals are held already, the cap (max_terminals=3)" in text
        assert said(await a.prompt("[[termmany:3]]"), "many") == "3"  # released: room again


@pytest.mark.parametrize(("request_limit", "kept"), [(None, 4096), (1000, 1000), (10 << 20, 4096)])
async def test_the_output_of_a_command_that_never_stops_is_bounded(tmp_path, request_limit, kept):
    limit = "" if request_limit is None else f"[[termlimit:{request_limit}]] "
    async with agent(tmp_path, output_byte_limit=4096) as a, trio.open_nursery() as nursery:
        nursery.start_soon(a.adapter.prompt, f"{limit}[[termflood:yes é]] [[hang]]", a.on_update)
        await a.until_said("waiting")
        assert said(a.text, "truncated") == "true"
        output = output_of(a.text, "output")
        assert kept - 1 <= len(output.encode()) <= kept  # cut at a character boundary (é is 2 bytes)
        assert set(output) <= {"é", "\n"} and "\n\n" not in output and "éé" not in output
        terminals = a.adapter.terminals
        # `yes` writes on and the reader drains it: wait (parked between looks) until it wrote plenty
        while terminals.output_received() < FLOOD:
            assert terminals.output_held() <= kept
            await trio.sleep(0.05)
        assert terminals.output_held() <= kept
        pids = [p.pid for g in a.terminal_groups() for p in find_marked(lambda m, g=g: m == g.marker)]
        assert len(pids) >= 1
        nursery.cancel_scope.cancel()  # the turn ends: its terminals are released, their trees die
    await wait_exited(pids)


@pytest.mark.parametrize("ending", ["turn_cancelled", "adapter_stopped"])
async def test_a_terminal_left_running_dies_when_its_turn_or_its_adapter_ends(tmp_path, ending):
    escape = "setsid sleep 1000 & echo $! > pid; trap '' TERM; while [ ! -s pid ]; do sleep 0.01; done; echo ready; wait"
    async with agent(tmp_path) as a:

        async def turn() -> None:
            try:
                await a.adapter.prompt(f"[[termhang:{escape}]]", a.on_update)
            except AgentError:
                assert ending == "adapter_stopped"  # its connection went with it

        async with trio.open_nursery() as turns:
            turns.start_soon(turn)
            await a.until_said("term-ready")
            (group,) = a.terminal_groups()
            escaper = int((tmp_path / "ws" / "pid").read_text())
            assert psutil.Process(escaper).status() != psutil.STATUS_ZOMBIE
            assert os.getsid(escaper) != os.getsid(group.pid)  # it left the terminal's session
            assert group.live_processes() >= 3  # the keeper, sh and the escaper at least
            assert a.adapter.live_processes() >= group.live_processes() + 2  # and the agent's tree
            if ending == "turn_cancelled":
                turns.cancel_scope.cancel()
            else:
                a.stop.cancel()
        if ending == "turn_cancelled":
            await wait_exited([group.pid, escaper])  # the adapter runs on
            await a.until_gone(group)
            assert a.adapter.usable
    await wait_exited([group.pid, escaper])
    assert (group, False) in a.groups


@given(st.lists(st.text(max_size=40), max_size=30), st.integers(min_value=0, max_value=64))
def test_output_buffer_keeps_the_last_bytes_from_a_character_boundary(pieces, limit):
    data = "".join(pieces).encode()
    buffer = OutputBuffer(limit)
    for i in range(0, len(data), 7):  # chunks split characters anywhere
        buffer.append(data[i:i + 7])
        assert len(buffer) <= limit
        text = buffer.text()  # an unfinished character at the end is left out, never mangled
        assert "\ufffd" not in text and data[:i + 7].decode(errors="ignore").endswith(text)
    kept = buffer.text(final=True).encode()
    assert data.endswith(kept) and len(kept) >= min(len(data), limit) - 3
    assert buffer.truncated == (len(data) > limit) and buffer.received == len(data)
