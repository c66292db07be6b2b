"""``corral ui`` in a real browser (headless Debian Chromium driven by Playwright), against a store
whose worker (another process) holds a paused job and an agent job streaming tokens: the list
shows both and follows their changes live; the agent job's page shows its tokens arriving, its DAG
and its process tree; Resume with a payload completes the paused job, Cancel ends the other and its
process tree is gone; a request without the token is refused (403), and no agent env value is ever
on a page.

Screenshots of the two pages go to the test's tmp dir, and also to ``$CORRAL_UI_SCREENSHOTS`` when
set (``CORRAL_UI_SCREENSHOTS=docs python -m pytest tests/ui`` refreshes the README's)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import sync_playwright

from runtime.testing import wait_exited

PY = sys.executable
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECRET = "sk-never-shown-0451"  # the agent's env value in ui_worker.py
BOUND = 120


@asynccontextmanager
async def running(argv: list[str], prefix: str) -> AsyncIterator[str]:
    """Run ``argv``; yield the rest of its first stdout line starting with ``prefix``; SIGTERM it after."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    try:
        buffer = b""
        with trio.fail_after(BOUND):
            while True:
                line, _, rest = buffer.partition(b"\n")
                if _ and line.startswith(prefix.encode()):
                    break
                if _:
                    buffer = rest
                    continue
                chunk = await proc.stdout.receive_some()
                assert chunk, f"{argv[:3]} ended before printing {prefix!r}"
                buffer += chunk
        yield line.decode()[len(prefix):] if prefix != "http://" else line.decode()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(30):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await proc.stdout.aclose()


def _shoot(page: Any, name: str, dirs: list[Path]) -> None:
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / name), full_page=True)


def browse(url: str, ready: dict[str, Any], shots: list[Path]) -> dict[str, Any]:
    """Everything the test does in the browser; what it saw."""
    base = url.split("/?", 1)[0]
    paused, streaming = ready["paused"], ready["streaming"]
    seen: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        listing = context.new_page()
        listing.goto(url)
        listing.wait_for_selector(f'tr[data-job="{paused}"][data-state="paused"]', timeout=30_000)
        listing.wait_for_selector(f'tr[data-job="{streaming}"][data-state="running"]', timeout=30_000)
        seen["list_secret"] = SECRET in listing.content()
        _shoot(listing, "ui-jobs.png", shots)

        page = context.new_page()
        page.goto(f"{base}/jobs/{streaming}")
        page.wait_for_function("document.querySelector('.tokens')?.textContent.length > 0", timeout=30_000)
        first = page.eval_on_selector(".tokens", "e => e.textContent.length")
        page.wait_for_function(f"document.querySelector('.tokens').textContent.length > {first}", timeout=30_000)
        seen["tokens_grew"] = (first, page.eval_on_selector(".tokens", "e => e.textContent.length"))
        page.wait_for_selector('#dag g.node.running[data-step="write"]', timeout=10_000)
        page.wait_for_selector('#dag g.node.completed[data-step="prepare"]', timeout=10_000)
        page.wait_for_function("document.querySelectorAll('#procs tr').length >= 3", timeout=10_000)
        seen["procs"] = sorted(int(p) for p in page.eval_on_selector_all("#procs tr", "rs => rs.map(r => r.dataset.pid)"))
        seen["job_secret"] = SECRET in page.content() or SECRET in page.request.get(f"{base}/api/jobs/{streaming}").text()
        _shoot(page, "ui-job.png", shots)

        page.click("#cancel")
        page.wait_for_selector("#message.ok", timeout=30_000)
        seen["cancel_message"] = page.text_content("#message")
        page.wait_for_selector("#state.cancelled", timeout=30_000)
        listing.wait_for_selector(f'tr[data-job="{streaming}"][data-state="cancelled"]', timeout=30_000)
        page.wait_for_function("document.querySelectorAll('#procs tr').length === 0", timeout=30_000)

        page.goto(f"{base}/jobs/{paused}")
        page.wait_for_selector('#dag g.node.paused[data-step="triage"]', timeout=30_000)
        page.fill("#payload", "{not json")
        page.click("#resume")
        page.wait_for_selector("#message.error", timeout=10_000)
        seen["bad_payload"] = page.text_content("#message")
        page.fill("#payload", '{"approver": "ana"}')
        page.click("#resume")
        page.wait_for_selector("#state.completed", timeout=30_000)
        page.wait_for_function("document.querySelector('#outputs').textContent.includes('ana')", timeout=30_000)
        seen["outputs"] = json.loads(page.text_content("#outputs") or "{}")
        listing.wait_for_selector(f'tr[data-job="{paused}"][data-state="completed"]', timeout=30_000)
        page.click("#resume")  # it has ended: refused, and the page says why
        page.wait_for_selector("#message.error", timeout=10_000)
        seen["refused"] = page.text_content("#message")

        stranger = browser.new_context()  # no cookie, no token
        seen["no_token_page"] = stranger.request.get(f"{base}/").status
        seen["no_token_events"] = stranger.request.get(f"{base}/api/jobs/{paused}/events").status
        seen["wrong_token"] = stranger.request.get(f"{base}/?token=guess").status
        # a cookie alone does not make an action: the token must be in the header
        seen["action_without_header"] = page.request.post(f"{base}/api/jobs/{paused}/cancel", data="{}").status
        seen["static_without_token"] = stranger.request.get(f"{base}/static/app.js").status
        browser.close()
    return seen


async def test_the_ui_shows_both_jobs_streams_tokens_and_steers_them(tmp_path):
    db = tmp_path / "ui.db"
    shots = [tmp_path] + ([Path(os.environ["CORRAL_UI_SCREENSHOTS"])] if os.environ.get("CORRAL_UI_SCREENSHOTS") else [])
    async with running([PY, str(HERE / "ui_worker.py"), str(db)], "READY ") as line:
        ready = json.loads(line)
        assert len(ready["agent_pids"]) >= 3, ready  # keeper, two wrappers and the agent
        async with running([PY, "-m", "runtime", "ui", "--store", str(db), "--port", "0"], "http://") as url:
            with trio.fail_after(3 * BOUND):
                seen = await trio.to_thread.run_sync(browse, url, ready, shots)
        with trio.fail_after(BOUND):
            await wait_exited(ready["agent_pids"])  # Cancel took the agent's whole tree down
    assert not seen["list_secret"] and not seen["job_secret"], "an agent env value reached a page"
    first, later = seen["tokens_grew"]
    assert later > first > 0
    assert set(seen["procs"]) <= set(ready["agent_pids"]) and len(seen["procs"]) >= 3, seen["procs"]
    assert "cancelled" in seen["cancel_message"]
    assert "not valid JSON" in seen["bad_payload"]
    assert seen["outputs"]["apply"] == {"approved_by": "ana", "summary": "ticket 7 needs a human"}
    assert "has ended" in seen["refused"] or "not paused" in seen["refused"], seen["refused"]
    assert (seen["no_token_page"], seen["no_token_events"], seen["wrong_token"]) == (403, 403, 403)
    assert seen["action_without_header"] == 403
    assert seen["static_without_token"] == 200  # a script and a stylesheet, no data
    assert (tmp_path / "ui-jobs.png").stat().st_size > 10_000 and (tmp_path / "ui-job.png").stat().st_size > 10_000
