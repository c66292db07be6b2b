"""The demo's live display: one line per job slot, redrawn in place on a terminal (plain lines
otherwise), and the tokens each agent step streams."""

from __future__ import annotations

import collections
import shutil
import time
from typing import Any, TextIO

import attrs
import trio

from actors.stream import Delta, ReasoningContentDelta, TextDelta

from ..core.runtime import Runtime
from ..core.states import JobState

__all__ = ["Display", "delta_text"]


def delta_text(update: Any) -> str:
    if isinstance(update, Delta) and isinstance(update.delta, TextDelta | ReasoningContentDelta):
        return update.delta.text
    return ""


@attrs.define
class _Slot:
    """One spotlighted job on the live display."""

    ticket: int
    step: str = ""
    text: str = ""
    state: str | None = None  # set when the job has ended


class Display:
    """Streamed tokens of a few jobs and a progress line: redrawn in place on a TTY, a few plain
    lines otherwise.  Display state only; the report never reads it."""

    def __init__(self, out: TextIO, tty: bool, n_jobs: int, spotlight: int = 3) -> None:
        self.out = out
        self.tty = tty
        self.n_jobs = n_jobs
        self.slots: list[_Slot] = []
        self.n_slots = spotlight
        self.finished: collections.Counter[str] = collections.Counter()
        self.t0 = time.perf_counter()
        self.drawn = 0
        self.next_mark = 0.25
        self.rt: Runtime | None = None

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def step(self, ticket: int, step: str) -> None:
        slot = self._slot(ticket, claim=True)
        if slot is not None:
            slot.step, slot.text = step, ""

    def tokens(self, ticket: int, step: str, text: str) -> None:
        slot = self._slot(ticket, claim=True)
        if slot is not None:
            slot.step = step
            slot.text = (slot.text + text)[-200:]

    def step_done(self, ticket: int, step: str, text: str) -> None:
        if not self.tty and ticket < self.n_slots and text:
            self.write(f"  #{ticket} {step:<6} │ {' '.join(text.split())[:90]}\n")

    def job_done(self, ticket: int, state: str) -> None:
        self.finished[state] += 1
        slot = self._slot(ticket, claim=False)
        if slot is not None:
            slot.state = state
        done = sum(self.finished.values())
        if not self.tty and (done / self.n_jobs >= self.next_mark or done == self.n_jobs):
            while done / self.n_jobs >= self.next_mark:
                self.next_mark += 0.25
            self.write(self.progress() + "\n")

    def _slot(self, ticket: int, claim: bool) -> _Slot | None:
        for slot in self.slots:
            if slot.ticket == ticket:
                return slot
        if not claim:
            return None
        if len(self.slots) < self.n_slots:
            self.slots.append(_Slot(ticket))
            return self.slots[-1]
        for i, slot in enumerate(self.slots):
            if slot.state is not None:  # its job ended: give the slot to a running one
                self.slots[i] = _Slot(ticket)
                return self.slots[i]
        return None

    def progress(self) -> str:
        done = sum(self.finished.values())
        elapsed = time.perf_counter() - self.t0
        live = self.rt.jobs() if self.rt is not None else []
        running = sum(1 for h in live if h.state is not JobState.PENDING and h.result is None)
        order = ("completed", "abandoned", "failed", "cancelled")
        queued = sum(1 for h in live if h.state is JobState.PENDING)
        parts = [f"{done}/{self.n_jobs} done", f"running {running}", f"queued {queued}"]
        parts += [f"{s} {self.finished[s]}" for s in order if self.finished[s]]
        rate = done / elapsed if elapsed > 0 else 0.0
        return "  " + " · ".join(parts) + f" · {rate:.1f} jobs/s"

    def redraw(self) -> None:
        width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
        lines = []
        for slot in self.slots:
            tail = " ".join(slot.text.split())[-(width - 22):]
            mark = f"[{slot.state}]" if slot.state else slot.step
            lines.append(f"  #{slot.ticket:<4} {mark:<11} │ {tail}"[:width])
        lines.append(self.progress()[:width])
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.drawn = len(lines)

    async def run(self, done: trio.Event) -> None:
        """Redraw ten times a second while jobs run (a TTY only); parks once they all ended."""
        if not self.tty:
            await done.wait()
            return
        while not done.is_set():
            self.redraw()
            with trio.move_on_after(0.1):
                await done.wait()
        self.redraw()
