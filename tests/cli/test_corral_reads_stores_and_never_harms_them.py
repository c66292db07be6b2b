"""``corral jobs | show | events`` read a store (replaying a job's events as they were published)
and never write it; a store that is missing, corrupt, read-only or cannot be created is one
clear line, and is left as it was."""

from __future__ import annotations

import io
import json
import os

import pytest
from cli_support import corral, json_lines

from runtime.cli.render import EventPrinter
from runtime.store import SqliteStore


def test_events_replays_a_finished_job_from_the_store(tmp_path):
    store = tmp_path / "s.db"
    live = corral("run", "examples/triage.yaml", "-i", "ticket=7", "-i", "title=app crashes on start",
                  "-i", "flaky=true", "--json", "--store", store)
    assert live.returncode == 0, live.stderr
    live_events = json_lines(live.stdout)
    job_id = live_events[0]["job_id"]
    replay = corral("events", job_id, "--json", "--store", store)
    assert replay.returncode == 0, replay.stderr
    assert json_lines(replay.stdout) == live_events  # every event, in order, as it was published
    assert [e["seq"] for e in live_events] == list(range(len(live_events)))
    # the human rendering of a replay is the rendering of the live run
    rendered = io.StringIO()
    printer = EventPrinter(rendered, colour=False)
    for event in live_events:
        printer(event)
    human = corral("events", job_id[:8], "--store", store)
    assert human.stdout == rendered.getvalue()
    assert "fix: failed (attempt 1)" in human.stdout and "exit rule 'changes_requested' -> loop" in human.stdout


def test_jobs_show_and_unrecorded_events(tmp_path):
    store = tmp_path / "s.db"
    quiet = corral("run", "examples/wordcount.yaml", "-i", "text=one two three", "--record", "off",
                   "--json", "--store", store)
    assert quiet.returncode == 0, quiet.stderr
    job_id = json_lines(quiet.stdout)[0]["job_id"]
    missing = corral("run", "examples/wordcount.yaml", "--json", "--store", store)  # no text input
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == ("error: inputs of flow 'wordcount': text: missing, read by step 'count' "
                              "as $job.text\n")
    failing = corral("run", "examples/wordcount.yaml", "-i", "text=5", "--json", "--store", store)
    assert failing.returncode == 1  # 5 is a number: the step's .split() fails
    failed_id = json_lines(failing.stdout)[0]["job_id"]

    listing = corral("jobs", "--store", store)
    assert listing.returncode == 0
    assert job_id[:12] in listing.stdout and failed_id[:12] in listing.stdout
    only_failed = json_lines(corral("jobs", "--state", "failed", "--json", "--store", store).stdout)
    assert [r["job_id"] for r in only_failed] == [failed_id]

    shown = corral("show", job_id[:8], "--store", store)
    assert shown.returncode == 0 and "completed" in shown.stdout and '"words": 3' in shown.stdout
    failed = json.loads(corral("show", failed_id, "--json", "--store", store).stdout)
    assert failed["reason"] == "step_failed:count" and "exited with status 1" in failed["error"]

    unrecorded = corral("events", job_id, "--store", store)
    assert unrecorded.returncode == 1 and "record=off" in unrecorded.stderr
    assert corral("show", "ffffffffff", "--store", store).returncode == 1


@pytest.mark.parametrize("command", ["jobs", "show X", "events X"])
def test_inspection_without_a_store_says_so(tmp_path, command):
    store = tmp_path / "missing.db"
    result = corral(*command.split(), "--store", store)
    assert result.returncode == 1 and "no store at" in result.stderr
    assert not store.exists()  # inspecting creates nothing


def test_a_corrupt_store_is_an_error_message_and_left_alone(tmp_path):
    store = tmp_path / "corrupt.db"
    store.write_bytes(b"not a database, but someone's data" * 10)
    before = store.read_bytes()
    for args in (["jobs"], ["run", "examples/wordcount.yaml", "-i", "text=a b"]):
        result = corral(*args, "--store", store)
        assert result.returncode == 1, result.stderr
        assert "not a SQLite database" in result.stderr and "Traceback" not in result.stderr
    assert store.read_bytes() == before


def test_a_store_path_that_cannot_be_created_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    flow = "examples/wordcount.yaml"
    for store, fragment in ((blocker / "sub" / "s.db", f"{blocker} is a file, not a directory"),
                            (tmp_path, "is a directory, not a store file")):
        for args in (["run", flow, "-i", "text=a b"], ["demo", "--jobs", "1"]):
            result = corral(*args, "--store", store)
            assert result.returncode == 2, (args, result.stderr)
            assert result.stderr.count("\n") == 1 and fragment in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr
    assert blocker.read_text() == "not a directory"


def test_a_read_only_store_can_be_inspected_and_is_refused_by_writers(tmp_path, immutable):
    store = tmp_path / "s.db"
    ran = corral("run", "examples/wordcount.yaml", "-i", "text=one two", "--json", "--store", store)
    assert ran.returncode == 0, ran.stderr
    job_id = json_lines(ran.stdout)[0]["job_id"]
    before = (store.read_bytes(), store.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    immutable(store)  # a real read-only file: writes fail with EPERM, even for root
    listing = corral("jobs", "--store", store)
    assert listing.returncode == 0 and job_id[:12] in listing.stdout, listing.stderr
    shown = corral("show", job_id, "--store", store)
    assert shown.returncode == 0 and "completed" in shown.stdout, shown.stderr
    replay = corral("events", job_id, "--json", "--store", store)
    assert replay.returncode == 0 and json_lines(replay.stdout)[-1]["type"] == "job_finished"
    for args in (["run", "examples/wordcount.yaml", "-i", "text=a"], ["resume"], ["sweep"], ["demo", "--jobs", "1"]):
        result = corral(*args, "--store", store)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "is read-only" in result.stderr, (args, result.stderr)
        assert "jobs, show and events can read it" in result.stderr
    assert (store.read_bytes(), store.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before


def test_inspecting_never_writes_the_store(tmp_path):
    store = tmp_path / "s.db"
    ran = corral("run", "examples/wordcount.yaml", "-i", "text=one two", "--json", "--store", store)
    job_id = json_lines(ran.stdout)[0]["job_id"]
    before = (store.read_bytes(), store.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    assert before[2] == ["s.db"]
    for args in (["jobs"], ["show", job_id], ["events", job_id]):
        assert corral(*args, "--store", store).returncode == 0
    # same bytes and mtime, and no -wal or -shm file left beside it
    assert (store.read_bytes(), store.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before


async def test_jobs_cuts_a_long_reason_with_an_ellipsis(tmp_path):
    from runtime.store import JobRecord

    store = tmp_path / "s.db"
    reason = "step_failed:a-step-with-a-rather-long-name"
    async with SqliteStore(store) as st:
        await st.put_job(JobRecord(job_id="j1", flow_name="a-flow-with-a-long-long-name", flow={}, inputs={},
                                   state="failed", reason=reason, created_at=1.0, updated_at=2.0, finished_at=2.0))
    out = corral("jobs", "--store", store).stdout
    assert reason[:23] + "…" in out and reason not in out
    assert "a-flow-with-a-long-…" in out  # the flow column too
