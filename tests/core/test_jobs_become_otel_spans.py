"""With a tracer provider, each job is an OpenTelemetry span and each step attempt a child span,
built from the job's events (retries, exit rules, pauses as span events; a failed attempt with
status ERROR and an exception event).  Without one, opentelemetry is not even imported.

The provider is passed to ``open_runtime`` (the SDK's in-memory exporter behind a simple span
processor); the global provider is set only in a subprocess, so nothing leaks between tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing
from core_support import forever, ok
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, NoOpTracerProvider, StatusCode
from opentelemetry.trace import TracerProvider as TracerProviderAPI

from runtime import ExitRule, Flow, JobPaused, JobState, OnError, Step, open_runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def events_of(span: ReadableSpan) -> list[tuple[str, dict]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


async def test_retry_loop_and_escalate_give_the_expected_span_tree(autojump_clock, traced):
    provider, exporter = traced

    async def flaky(ctx, inputs):
        if ctx.attempt == 1:
            raise ConnectionError("flaky")
        return {"secret_output": "s3cr3t"}

    flow = Flow("review", [
        Step("fetch", run=flaky, on_error=OnError("retry", max_attempts=2), inputs={"token": "$job.token"}),
        Step("check", run=ok, after=["fetch"],
             exits=[ExitRule("again", when="iteration < 1", action="loop", target="check", max_iterations=2)]),
        Step("ask", run=ok, after=["check"], exits=[ExitRule("human", when="True", action="escalate")]),
        Step("ship", run=ok, after=["ask"]),
    ], inputs={"token": str})
    async with open_runtime(tracer_provider=provider) as rt:
        job = await rt.spawn(flow, {"token": "t0ps3cret"})
        async for event in job.events():
            if isinstance(event, JobPaused):
                break
        assert job.state is JobState.PAUSED
        await job.resume({"ok": True})
        result = await job.wait()
    assert result.state is JobState.COMPLETED

    spans = exporter.get_finished_spans()
    names = by_name(spans)
    assert sorted(names) == ["job review", "step ask", "step check", "step fetch", "step ship"]
    [root] = names["job review"]
    assert root.parent is None
    assert dict(root.attributes) == {"corral.job.id": job.id, "corral.flow": "review",
                                     "corral.job.resumed": False, "corral.outcome": "completed"}
    assert root.status.status_code is StatusCode.UNSET
    assert events_of(root) == [
        ("step_retry", {"corral.step": "fetch", "corral.step.attempt": 1, "error": "ConnectionError: flaky"}),
        ("exit_rule", {"corral.step": "check", "corral.exit.rule": "again", "corral.exit.action": "loop"}),
        ("exit_rule", {"corral.step": "ask", "corral.exit.rule": "human", "corral.exit.action": "escalate"}),
        ("paused", {"corral.step": "ask", "corral.exit.rule": "human"}),
        ("resumed", {}),
    ]
    steps = [s for s in spans if s is not root]
    assert len(steps) == 6
    for span in steps:  # every step attempt is a child of the job span, in the same trace
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
    attempts = [(s.attributes["corral.step.attempt"], s.attributes["corral.step.iteration"],
                 s.attributes["corral.outcome"]) for s in names["step fetch"]]
    assert attempts == [(1, 0, "failed"), (2, 0, "completed")]
    failed, retried = names["step fetch"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ConnectionError: flaky"
    assert failed.attributes["corral.step.on_error"] == "retry"
    assert events_of(failed) == [("exception", {"exception.type": "ConnectionError", "exception.message": "flaky"})]
    assert retried.status.status_code is StatusCode.UNSET and not retried.events
    assert [s.attributes["corral.step.iteration"] for s in names["step check"]] == [0, 1]
    assert all(s.attributes["corral.outcome"] == "completed" for s in names["step check"] + names["step ship"])
    assert dict(names["step ship"][0].attributes) == {
        "corral.job.id": job.id, "corral.flow": "review", "corral.step": "ship", "corral.step.attempt": 1,
        "corral.step.iteration": 0, "corral.outcome": "completed"}
    # inputs, outputs and resume payloads are never attributes
    text = repr([(dict(s.attributes), events_of(s)) for s in spans])
    assert "t0ps3cret" not in text and "s3cr3t" not in text


async def test_a_failed_job_records_the_error_on_both_spans(autojump_clock, traced):
    provider, exporter = traced

    async def broken(ctx, inputs):
        raise KeyError("missing")

    async with open_runtime(tracer_provider=provider) as rt:
        result = await (await rt.spawn(Flow("f", [Step("a", run=broken)]))).wait()
    assert result.state is JobState.FAILED
    step, job = exporter.get_finished_spans()
    assert step.attributes["corral.step.on_error"] == "fail"
    assert events_of(step) == [("exception", {"exception.type": "KeyError", "exception.message": "'missing'"})]
    assert job.name == "job f" and job.attributes["corral.outcome"] == "failed"
    assert job.attributes["corral.reason"] == "step_failed:a"
    assert job.status.status_code is StatusCode.ERROR and job.status.description == "KeyError: 'missing'"


async def test_a_durable_job_on_sqlite_ends_its_span_once_its_end_is_written(tmp_path, traced):
    # a durable job delivers JobFinished only after writing it with its final record: the spans see it then
    provider, exporter = traced
    async with open_runtime(store=tmp_path / "s.db", tracer_provider=provider) as rt:
        job = await rt.spawn(Flow("d", [Step("a", run=ok), Step("b", run=ok, after=["a"])]), record="durable")
        result = await job.wait()
    assert result.state is JobState.COMPLETED
    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == ["job d", "step a", "step b"]
    assert spans["job d"][0].attributes["corral.outcome"] == "completed"


async def test_a_cancelled_job_ends_its_spans_with_its_outcome(autojump_clock, traced):
    provider, exporter = traced
    flow = Flow("slow", [Step("a", run=forever)])
    async with open_runtime(tracer_provider=provider, max_running_jobs=1) as rt:
        running = await rt.spawn(flow)
        queued = await rt.spawn(flow)
        await trio.testing.wait_all_tasks_blocked()
        await queued.cancel("not needed")
        await running.cancel("user")
    spans = exporter.get_finished_spans()
    assert [(s.name, s.attributes["corral.job.id"]) for s in spans] == [
        ("job slow", queued.id), ("step a", running.id), ("job slow", running.id)]
    never_started, step, job = spans
    # the queued job never ran: its span is an instant with the outcome
    assert never_started.attributes["corral.outcome"] == "cancelled"
    assert never_started.attributes["corral.reason"] == "not needed"
    assert never_started.start_time == never_started.end_time
    assert step.attributes["corral.outcome"] == "cancelled" and step.status.status_code is StatusCode.UNSET
    assert step.parent.span_id == job.context.span_id
    assert job.attributes["corral.outcome"] == "cancelled" and job.attributes["corral.reason"] == "user"
    assert job.status.status_code is StatusCode.UNSET


async def test_an_escalation_that_times_out_is_a_span_event(autojump_clock, traced):
    provider, exporter = traced
    flow = Flow("f", [Step("ask", run=ok, exits=[ExitRule("human", action="escalate", timeout=600)])])
    async with open_runtime(tracer_provider=provider) as rt:
        result = await (await rt.spawn(flow)).wait()
    assert result.state is JobState.ABANDONED
    step, job = exporter.get_finished_spans()
    assert step.name == "step ask" and step.attributes["corral.outcome"] == "completed"
    assert [name for name, _ in events_of(job)] == ["exit_rule", "paused", "escalation_timed_out"]
    assert events_of(job)[-1][1] == {"corral.step": "ask", "corral.exit.rule": "human",
                                     "corral.exit.action": "abandon"}
    assert job.attributes["corral.outcome"] == "abandoned" and job.attributes["corral.reason"] == result.reason
    assert job.status.status_code is StatusCode.UNSET


async def test_the_job_span_is_a_child_of_the_span_current_at_spawn(autojump_clock, traced):
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span("request") as request:
        async with open_runtime(tracer_provider=provider) as rt:
            job = await rt.spawn(Flow("f", [Step("a", run=forever)]), record="memory")
            await trio.testing.wait_all_tasks_blocked()
            backlog, _ = job._job.recording.replay_source()  # the recorder is a sink too, after the spans
            assert [type(e).__name__ for e in backlog] == ["JobStarted", "StepStarted"]
            await job.cancel()
    names = by_name(exporter.get_finished_spans())
    assert names["job f"][0].parent.span_id == request.get_span_context().span_id
    assert names["step a"][0].parent.span_id == names["job f"][0].context.span_id


async def test_two_runtimes_trace_to_their_own_providers(autojump_clock, traced):
    provider, exporter = traced
    other_exporter = InMemorySpanExporter()
    other = TracerProvider()
    other.add_span_processor(SimpleSpanProcessor(other_exporter))
    flow = Flow("f", [Step("a", run=ok)])
    async with open_runtime(tracer_provider=provider) as rt1, open_runtime(tracer_provider=other) as rt2:
        one = await rt1.spawn(flow)
        two = await rt2.spawn(flow)
        await one.wait()
        await two.wait()
    assert {s.attributes["corral.job.id"] for s in exporter.get_finished_spans()} == {one.id}
    assert {s.attributes["corral.job.id"] for s in other_exporter.get_finished_spans()} == {two.id}


async def test_no_provider_means_no_sink_and_a_noop_provider_means_off(autojump_clock):
    # opentelemetry.trace is imported (this module does) but no global provider is set
    async with open_runtime() as rt, open_runtime(tracer_provider=NoOpTracerProvider()) as noop:
        for runtime in (rt, noop):
            job = await runtime.spawn(Flow("f", [Step("a", run=forever)]))
            await trio.testing.wait_all_tasks_blocked()
            assert job._job.hub.sink is None and job._job.hub.observer is None  # events of an unrecorded, untraced job are not even built
            await job.cancel()


class BrokenTracer(NoOpTracer):
    def start_span(self, *args, **kwargs):
        raise RuntimeError("tracer broken")


class BrokenProvider(TracerProviderAPI):
    def get_tracer(self, *args, **kwargs):
        return BrokenTracer()


async def test_a_broken_tracer_never_breaks_a_job(autojump_clock):
    async with open_runtime(tracer_provider=BrokenProvider()) as rt:
        result = await (await rt.spawn(Flow("f", [Step("a", run=ok), Step("b", run=ok, after=["a"])]))).wait()
    assert result.state is JobState.COMPLETED and set(result.outputs) == {"a", "b"}


async def test_a_tracer_provider_of_another_kind_is_refused():
    with pytest.raises(TypeError, match="tracer_provider must be an opentelemetry TracerProvider"):
        async with open_runtime(tracer_provider="jaeger"):  # type: ignore[arg-type]
            pass


def run_script(script: str, **env_vars: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "core")])}
    env.pop("OTEL_PYTHON_TRACER_PROVIDER", None)
    env.update(env_vars)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_a_provider_opentelemetry_is_never_imported():
    out = run_script("""
        import sys, trio
        from core_support import ok
        from runtime import Flow, Step, open_runtime

        async def main():
            async with open_runtime() as rt:
                job = await rt.spawn(Flow("f", [Step("a", run=ok)]))
                await job.wait()
                print(job.state.value, job._job.hub.sink is None)

        trio.run(main)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
    """)
    assert out.splitlines() == ["completed True", "[]"]


def test_the_global_tracer_provider_is_used_when_set():
    out = run_script("""
        import trio
        from core_support import ok
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from runtime import Flow, Step, open_runtime

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        async def main():
            async with open_runtime() as rt:
                await (await rt.spawn(Flow("f", [Step("a", run=ok)]))).wait()

        trio.run(main)
        print([s.name for s in exporter.get_finished_spans()])
    """)
    assert out == "['step a', 'job f']"


def test_the_provider_named_by_otel_python_tracer_provider_is_used():
    out = run_script("""
        import trio
        from core_support import ok
        from runtime import Flow, Step, open_runtime

        async def main():
            async with open_runtime() as rt:
                job = await rt.spawn(Flow("f", [Step("a", run=ok)]))
                await job.wait()
                print(type(job._job.hub.observer).__name__)

        trio.run(main)
    """, OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider")
    assert out == "JobSpans"
