"""corral is a quiet library: nothing on the host's stdout, nothing below WARNING unless the app
configures logging; runtime.testing imports without pytest; its fixtures come from a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EMBED = """\
import sys
import trio
{setup}
from runtime import AgentSpec, Flow, OnError, Step, open_runtime


async def boom(ctx, inputs):
    raise RuntimeError("this step fails")


async def main():
    flow = Flow("quiet", [
        Step("agent", agent=AgentSpec([sys.executable, "-m", "actors.fake_agent"]), prompt="hello"),
        Step("boom", run=boom, after=["agent"], on_error=OnError("continue")),
    ])
    async with open_runtime(store=sys.argv[1]) as rt:
        job = await rt.spawn(flow, record="durable")
        result = await job.wait()
    assert result.state.value == "completed", result
    print(job.id)


trio.run(main)
"""

INFO_EVENTS = ("store_opened", "store_migrated", "process group spawned", "store_closed")


def run_embedded(tmp_path: Path, setup: str = "") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(EMBED.format(setup=setup))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), str(tmp_path / "app.db")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_an_app_that_configures_nothing_gets_only_its_own_stdout(tmp_path):
    proc = run_embedded(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) == 32, proc.stdout  # exactly the job id it printed
    assert not any(name in proc.stderr for name in INFO_EVENTS), proc.stderr
    assert "[debug" not in proc.stderr and "[info" not in proc.stderr
    # WARNING and above still reach stderr through Python's last-resort handler
    assert "step_failed" in proc.stderr and "job_id=" in proc.stderr


def test_an_app_that_configures_logging_gets_corrals_records_with_job_id(tmp_path):
    setup = "import logging\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format='%(name)s %(levelname)s %(message)s')"
    proc = run_embedded(tmp_path, setup)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert len(proc.stdout.splitlines()) == 1
    assert "corral.store" in proc.stderr or "runtime.store.sqlite" in proc.stderr
    assert "store_opened" in proc.stderr
    assert f"job_id='{job_id}'" in proc.stderr and "step='boom'" in proc.stderr


def test_leak_checks_import_without_pytest(tmp_path):
    script = tmp_path / "health.py"
    script.write_text(textwrap.dedent("""\
        import sys

        class NoPytest:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pytest", "_pytest", "pytest_trio"):
                    raise ImportError(f"{name} is blocked in this test")
                return None

        sys.meta_path.insert(0, NoPytest())
        import trio
        from runtime import Flow, Step, open_runtime
        from runtime.testing import LeakError, WakeupCounter, assert_no_leaks

        async def ok(ctx, inputs):
            return {}

        async def main():
            async with open_runtime() as rt:
                await (await rt.spawn(Flow("f", [Step("a", run=ok)]))).wait()
                assert_no_leaks(rt)
            print("healthy", "pytest" in sys.modules)

        trio.run(main)
        """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "healthy False\n"


def test_the_pytest_plugin_gives_users_the_fixtures_with_no_conftest(tmp_path):
    from importlib.metadata import entry_points

    assert "runtime.testing.plugin" in {e.value for e in entry_points(group="pytest11")}
    project = tmp_path / "userproject"
    project.mkdir()
    (project / "test_user.py").write_text(textwrap.dedent("""\
        from runtime import Flow, Step

        async def ok(ctx, inputs):
            return {"ok": True}

        async def test_my_flow(corral_runtime, wakeups):
            job = await corral_runtime.spawn(Flow("f", [Step("a", run=ok)]))
            assert (await job.wait()).outputs == {"a": {"ok": True}}
        """))
    (project / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout

