"""How the CLI shows things: its log configuration, events as lines of text or JSON."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import click
import structlog

from ..core.events import Event, Lagged, event_to_dict

__all__ = ["EventOutput", "EventPrinter", "configure_logging", "json_line", "short"]


def configure_logging(verbosity: int, *, stream: TextIO | None = None, quiet_level: int = logging.WARNING) -> None:
    """Send structlog to ``stream`` (stderr): ``quiet_level`` by default, INFO with -v, DEBUG with -vv."""
    stream = stream or sys.stderr
    level = quiet_level if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


# -- printing events ------------------------------------------------------------------------------


def short(value: Any, width: int = 100) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _stream_text(update: Any) -> str:
    """The text of a stream update (as a dict from :func:`event_to_dict`)."""
    if not isinstance(update, Mapping) or update.get("type") != "Delta":
        return ""
    delta = update.get("delta")
    if not isinstance(delta, Mapping):
        return ""
    for key in ("text", "data", "arguments_delta", "content_delta"):
        value = delta.get(key)
        if isinstance(value, str):
            return value
    return ""


_STATE_COLOURS = {"completed": "green", "failed": "red", "abandoned": "yellow", "cancelled": "magenta"}


class EventPrinter:
    """Human-readable job events, one line each; streamed text is written as it arrives.

    Coloured when ``out`` is a terminal and ``NO_COLOR`` is not set (or as ``colour`` says).

    Takes events as dicts (:func:`~runtime.events.event_to_dict`, or a stored event row's payload),
    so a live run and a replay from the store print the same.
    """

    def __init__(self, out: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.out = out or sys.stdout
        if colour is None:  # a terminal, unless NO_COLOR is set (https://no-color.org)
            colour = self.out.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self._open: str | None = None  # the step whose streamed line is open

    def _style(self, text: str, **kw: Any) -> str:
        return click.style(text, **kw) if self.colour else text

    def _line(self, text: str) -> None:
        self._close()
        self.out.write(text + "\n")
        self.out.flush()

    def _close(self) -> None:
        if self._open is not None:
            self.out.write("\n")
            self._open = None

    def lagged(self, n: int) -> None:
        """A slow reader missed ``n`` events."""
        self._line(self._style(f"  … {n} events dropped (the terminal fell behind)", dim=True))

    def __call__(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("type")
        step = ev.get("step")
        tag = f"  {step}" if step else ""
        if kind == "job_started":
            how = "resumed" if ev.get("resumed") else "started"
            inputs = f"  inputs {short(ev.get('inputs'))}" if ev.get("inputs") else ""
            self._line(self._style(f"job {ev.get('job_id')} ({ev.get('flow')}) {how}", bold=True) + inputs)
        elif kind == "step_started":
            extra = "".join(f" {k} {ev[k]}" for k, base in (("attempt", 1), ("iteration", 0))
                            if ev.get(k, base) != base)
            self._line(f"{tag}: started{extra}")
        elif kind == "step_stream":
            text = _stream_text(ev.get("update"))
            if not text:
                return
            prefix = self._style(f"  {step} │ ", dim=True)
            if self._open != step:
                self._close()
                self.out.write(prefix)
                self._open = step
            self.out.write(text.replace("\n", "\n" + prefix))
            self.out.flush()
        elif kind == "agent_update":  # the agent's plan, tool status, usage, ...
            self._line(self._style(f"{tag}: {ev.get('kind')} {short(ev.get('data'))}", dim=True))
        elif kind == "step_completed":
            extra = f" (iteration {ev['iteration']})" if ev.get("iteration") else ""
            self._line(f"{tag}: completed{extra}  {short(ev.get('outputs'))}")
        elif kind == "step_failed":
            self._line(self._style(f"{tag}: failed (attempt {ev.get('attempt')}): {short(ev.get('error'), 200)}"
                                   f" -> {ev.get('action')}", fg="red"))
        elif kind == "step_cancelled":
            self._line(self._style(f"{tag}: cancelled", fg="magenta"))
        elif kind == "exit_resolved":
            if ev.get("rule") is not None:
                self._line(f"{tag}: exit rule {ev.get('rule')!r} -> {ev.get('action')}")
        elif kind == "job_paused":
            self._line(self._style(f"  paused at {step} by rule {ev.get('rule')!r}", fg="yellow"))
        elif kind == "escalation_timed_out":
            self._line(self._style(f"{tag}: escalation {ev.get('rule')!r} timed out -> {ev.get('action')}",
                                   fg="yellow"))
        elif kind == "agent_session":
            how = " reloaded" if ev.get("loaded") else (f" new ({ev['fallback']})" if ev.get("fallback") else "")
            self._line(self._style(f"{tag}: agent session {ev.get('session_id')}{how}", dim=True))
        elif kind == "job_resumed":
            self._line(f"  resumed with {short(ev.get('payload'))}")
        elif kind == "job_finished":
            state = str(ev.get("state"))
            why = "".join(f"  {k}: {short(ev[k], 200)}" for k in ("reason", "error") if ev.get(k))
            self._line(self._style(f"job {ev.get('job_id')} {state.upper()}", bold=True,
                                   fg=_STATE_COLOURS.get(state)) + why)
        else:
            self._line(f"  {kind} {short(dict(ev))}")


def json_line(data: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(data, default=repr, ensure_ascii=False) + "\n")
    stream.flush()


class EventOutput:
    """Where a command's events go: JSON lines (``--json``) or an :class:`EventPrinter`."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printer = EventPrinter()

    def __call__(self, item: Event | Lagged | Mapping[str, Any]) -> None:
        if isinstance(item, Lagged):
            if self.as_json:
                json_line({"type": "lagged", "n": item.n})
            else:
                self.printer.lagged(item.n)
            return
        data = event_to_dict(item) if isinstance(item, Event) else item
        if self.as_json:
            json_line(data)
        else:
            self.printer(data)
