"""The ``corral`` command line (click)."""

from __future__ import annotations

import sys

import click
import trio

from .demo import run_demo


@click.group()
def main() -> None:
    """corral: an actor-model runtime for agent workflows on trio."""


@main.command()
@click.option("--jobs", "jobs", default=200, show_default=True, help="How many jobs to spawn.")
@click.option("--store", "store", default=".corral/corral.db", show_default=True, help="SQLite store path.")
def demo(jobs: int, store: str) -> None:
    """Run the demo: many jobs through every terminal path, then a leak report."""
    ok = trio.run(run_demo, jobs, store)
    sys.exit(0 if ok else 1)
