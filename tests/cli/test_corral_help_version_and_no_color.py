"""``corral --help`` lists every command, ``--version`` names the package version, and NO_COLOR
turns colour off."""

from __future__ import annotations

import io
import re

from cli_support import corral

from runtime.cli.render import EventPrinter


def test_help_lists_every_command():
    result = corral("--help")
    assert result.returncode == 0
    for command in ("demo", "run", "jobs", "show", "events", "resume", "sweep"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def test_version():
    import importlib.metadata

    result = corral("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"corral {importlib.metadata.version('corral')}"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_color_turns_colour_off(monkeypatch):
    event = {"type": "job_finished", "job_id": "j", "state": "failed", "error": "boom"}
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = _Tty()
    EventPrinter(coloured)(event)
    assert "\x1b[" in coloured.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = _Tty()
    EventPrinter(plain)(event)
    assert "\x1b[" not in plain.getvalue() and "job j FAILED" in plain.getvalue()
