"""What a Ray user writes in one script runs on the hosts as it runs embedded: steps defined in
``__main__``, closures, lambdas in ``when`` and callable objects travel cloudpickled.  What cannot
travel is refused at ``spawn()`` before anything is placed, naming the step or input; a durable
job still needs importable steps and says so, naming the step.  Errors that come back from a
host are short and plain: the user's exception and the host, no Ray wrapper, no ANSI codes."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
import trio

from runtime import ExitRule, Flow, JobState, Step, open_runtime
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.steps import noop
from runtime.cluster.testing import assert_cluster_no_leaks

from .support import BOUND

pytestmark = pytest.mark.usefixtures("ray_head")

DRIVER = Path(__file__).with_name("script_driver.py")
ROOT = Path(__file__).resolve().parents[2]


async def test_a_scripts_main_steps_closures_and_lambda_rules_run_on_two_hosts_as_embedded():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with trio.fail_after(3 * BOUND):
        done = await trio.run_process([sys.executable, str(DRIVER)], env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    line = next(x for x in done.stdout.decode().splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report["cluster"] == report["embedded"], report
    small, big = report["embedded"]
    assert small == {"state": "completed", "reason": None,
                     "outputs": {"ok": {"ok": True, "n": 2}, "scale": {"value": 20}, "double": {"value": 40}}}
    assert (big["state"], big["reason"]) == ("abandoned", "too_big")  # the lambda rule fired on the host
    assert len(report["host_pids"]) == 2  # one job on each host


def _scaled(k):
    async def scaled(ctx, inputs):
        return {"value": k}
    return scaled


async def test_what_cannot_travel_is_refused_at_spawn_naming_the_step_or_input():
    lock = threading.Lock()

    async def holds_a_lock(ctx, inputs):
        with lock:
            return {}

    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
        with pytest.raises(TypeError, match=r"step 'locked' cannot be sent to a host: TypeError: .*lock"):
            await rt.spawn(Flow("f", [Step("ok", run=noop), Step("locked", run=holds_a_lock)]))
        with pytest.raises(TypeError, match=r"input 'x' cannot be sent to a host"):
            await rt.spawn(Flow("f", [Step("a", run=noop, inputs={"x": "$job.x"})]), {"x": threading.Lock()})
        closure = Flow("c", [Step("a", run=_scaled(3))])
        with pytest.raises(ValueError, match=r"record='durable' on a cluster .* step 'a': its run function is "
                                             r"_scaled.scaled, a nested function"):
            await rt.spawn(closure, record="durable")
        ruled = Flow("r", [Step("a", run=noop, exits=[ExitRule("x", when=lambda o: True, action="abandon")])])
        with pytest.raises(ValueError, match=r"step 'a': exit rule 'x' has a callable when"):
            await rt.spawn(ruled, record="durable")
        assert (await rt.stats_async()).live_jobs == 0 and rt.jobs() == []  # nothing was placed
        # the same closure, not durable, runs
        result = await (await rt.spawn(closure)).wait()
        assert (result.state, result.outputs) == (JobState.COMPLETED, {"a": {"value": 3}})
        await assert_cluster_no_leaks(rt)


def _plain_and_short(text: str) -> None:
    assert len(text) <= 600, len(text)
    assert "\x1b" not in text and "Traceback" not in text and "RayTaskError" not in text, text


async def test_errors_from_a_host_are_short_and_plain_and_name_the_host():
    # defined in the test, so that cloudpickle ships them by value (this module is not importable
    # on the hosts: a step of it would fail there with "No module named ...", plainly too)
    class OnlyHere:
        """Pickles anywhere, unpickles only in the process that made it (a module the host lacks)."""

        def __init__(self) -> None:
            self.pid = os.getpid()

        def __setstate__(self, state):
            if state["pid"] != os.getpid():
                raise ModuleNotFoundError("No module named 'only_on_the_driver'")
            self.__dict__.update(state)

    async def fails_loudly(ctx, inputs):
        raise ValueError("\x1b[31mthe ticket is malformed\x1b[0m: " + "x" * 5000)

    marker = OnlyHere()

    async def uses_it(ctx, inputs):
        return {"pid": marker.pid}

    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            failed = await (await rt.spawn(Flow("f", [Step("a", run=fails_loudly)]))).wait()
            unloadable = await rt.spawn(Flow("u", [Step("a", run=uses_it)]))
            lost = await unloadable.wait()
        assert (failed.state, failed.reason) == (JobState.FAILED, "step_failed:a"), failed.error
        _plain_and_short(failed.error)
        assert failed.error.startswith("ValueError: the ticket is malformed: xxx")
        assert failed.error.endswith(f" (on {rt.hosts[0].name})") or failed.error.endswith(f" (on {rt.hosts[1].name})")
        assert (lost.state, lost.reason) == (JobState.FAILED, "spawn_failed")
        _plain_and_short(lost.error)
        assert lost.error == (f"ModuleNotFoundError: No module named 'only_on_the_driver' "
                              f"(on host pid {unloadable.host_pid} on {os.uname().nodename})")
        await assert_cluster_no_leaks(rt)


async def test_the_same_flow_object_runs_embedded_and_on_a_cluster():
    flow = Flow("same", [Step("a", run=_scaled(5),
                              exits=[ExitRule("big", when=lambda o: o["value"] > 4, action="abandon")])])
    async with open_runtime() as rt:
        embedded = await (await rt.spawn(flow)).wait()
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            clustered = await (await rt.spawn(flow)).wait()
        await assert_cluster_no_leaks(rt)
    assert (embedded.state, embedded.reason) == (clustered.state, clustered.reason) == (JobState.ABANDONED, "big")
    assert embedded.outputs == clustered.outputs == {"a": {"value": 5}}
