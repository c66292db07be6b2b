"""One Ray head for the cluster tests, started the way an operator does (``ray start --head``);
this process connects to it once as a driver.  A module that needs it says
``pytestmark = pytest.mark.usefixtures("ray_head")``; the head is stopped after the package."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from .support import RAY_CLI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def ray_head():
    """One Ray head (``ray start --head``), this process its driver; then ``ray.shutdown()`` and
    ``ray stop``."""
    ray = pytest.importorskip("ray")  # the ``ray`` extra; CI installs it
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    subprocess.run([*RAY_CLI, "start", "--head", f"--port={free_port()}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        ray.init(address="auto", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True, timeout=120)
