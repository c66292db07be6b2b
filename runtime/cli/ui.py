"""``corral ui``: see and steer a store's jobs in a browser (the ``ui`` extra, :mod:`runtime.ui`)."""

from __future__ import annotations

import errno

import click
import trio

from ..client import open_client
from .common import SIGNALS, existing_store, store_option, trio_run, verbose_option, verbosity
from .render import configure_logging

__all__ = ["ui"]

DEFAULT_PORT = 8765


@click.command()
@store_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="The port on 127.0.0.1 (0: any free port).")
@verbose_option
def ui(store: str, port: int, verbose: int) -> None:
    """Serve a page to see and steer the jobs of the store's runtimes, on 127.0.0.1 only.

    Prints the page's URL with a random token (every page and action needs it) as its first line
    on stdout; Ctrl-C (or SIGTERM) stops it.  The jobs themselves are untouched by stopping it."""
    configure_logging(verbosity(verbose))
    path = existing_store(store)
    try:
        from ..ui import JobSource, serve
    except ImportError as exc:
        raise click.ClickException(f"corral ui needs the ui extra ({exc.name} is missing): "
                                   "pip install 'corral[ui]'") from None

    async def go() -> None:
        async with open_client(store=path) as client, trio.open_nursery() as nursery:
            with trio.open_signal_receiver(*SIGNALS) as signals:
                try:
                    url = await nursery.start(serve, JobSource(client), port)
                except OSError as exc:
                    why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror}"
                    raise click.ClickException(f"port {port} on 127.0.0.1 {why} (--port 0 takes a free one)") from None
                click.echo(url)
                click.echo(f"serving the jobs of {path}; Ctrl-C stops", err=True)
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    trio_run(go)
