"""An invalid flow is refused at construction with the field named (and a did-you-mean); inputs
are literals unless they start with a dollar."""

from __future__ import annotations

import functools

import pytest

from runtime import AgentSpec, ExitRule, Flow, FlowError, FlowInput, OnError, Step


async def noop(ctx, inputs):
    return {}


def err(fn) -> FlowError:
    with pytest.raises(FlowError) as info:
        fn()
    return info.value


def test_unknown_after_suggests():
    e = err(lambda: Flow("f", [Step("triage", run=noop), Step("fix", run=noop, after=["triag"])]))
    assert e.field == "steps.fix.after"
    assert "unknown step 'triag'" in str(e) and "did you mean 'triage'" in str(e)


def test_unknown_input_reference():
    e = err(
        lambda: Flow(
            "f", [Step("triage", run=noop), Step("fix", run=noop, inputs={"s": "$triage2.summary"})]
        )
    )
    assert e.field == "steps.fix.inputs.s" and "did you mean 'triage'" in str(e)


def test_bad_reference_root():
    e = err(lambda: Flow("f", [Step("a", run=noop, inputs={"x": "$jobs.n"})]))
    assert e.field == "steps.a.inputs.x" and "$jobs" in str(e) and "did you mean 'job'" in str(e)


def test_cycle_is_named():
    e = err(
        lambda: Flow(
            "f",
            [
                Step("a", run=noop, after=["c"]),
                Step("b", run=noop, after=["a"]),
                Step("c", run=noop, inputs={"x": "$b.x"}),
            ],
        )
    )
    assert e.field == "steps" and "cycle" in str(e)
    assert all(n in str(e) for n in "abc")


def test_duplicate_step_names():
    e = err(lambda: Flow("f", [Step("a", run=noop), Step("a", run=noop)]))
    assert e.field == "steps.a" and "duplicate" in str(e)


def test_loop_target_must_exist():
    e = err(
        lambda: Flow(
            "f",
            [
                Step(
                    "a",
                    run=noop,
                    exits=[
                        ExitRule("again", when="True", action="loop", target="zz", max_iterations=2)
                    ],
                )
            ],
        )
    )
    assert e.field == "steps.a.exits['again'].target" and "unknown step 'zz'" in str(e)


def test_loop_target_must_be_upstream():
    e = err(
        lambda: Flow(
            "f",
            [
                Step(
                    "a",
                    run=noop,
                    exits=[
                        ExitRule("again", when="True", action="loop", target="b", max_iterations=2)
                    ],
                ),
                Step("b", run=noop),
            ],
        )
    )
    assert e.field == "steps.a.exits['again'].target"


def test_loop_needs_bound():
    e = err(lambda: ExitRule("again", when="True", action="loop", target="a"))
    assert e.field == "exits['again'].max_iterations"


def test_unknown_action():
    e = err(lambda: ExitRule("r", when="True", action="abandno"))
    assert e.field == "exits['r'].action" and "did you mean 'abandon'" in str(e)
    e = err(lambda: OnError("retyr"))
    assert e.field == "on_error.action" and "did you mean 'retry'" in str(e)


def test_step_needs_exactly_one_kind():
    assert err(lambda: Step("a")).field == "steps.a"
    assert err(lambda: Step("a", run=noop, command=["true"])).field == "steps.a"


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), float("inf"), -float("inf"), "5", True, [1]])
def test_a_timeout_that_can_never_run_is_refused(bad):
    e = err(lambda: Step("a", run=noop, timeout=bad))
    assert e.field == "steps.a.timeout"
    e = err(lambda: Flow("f", [Step("a", run=noop)], timeout=bad))
    assert e.field == "timeout"


def test_run_must_be_an_async_function():
    def plain(ctx, inputs):
        return {}

    class Sync:
        def __call__(self, ctx, inputs):
            return {}

    class Async:
        async def __call__(self, ctx, inputs):
            return {}

    for fn, got in [(plain, "plain function"), (lambda ctx, inputs: {}, "lambda"), (Sync(), "plain")]:
        e = err(lambda fn=fn: Step("a", run=fn))
        assert e.field == "steps.a.run" and "async def" in str(e) and got in str(e)
    assert Step("a", run=Async()).run is not None
    assert Step("a", run=functools.partial(noop)).run is not None


def test_inputs_are_literals_unless_they_start_with_a_dollar():
    step = Step("b", run=noop, inputs={"mode": "fast", "n": 3, "price": "$$5", "t": "$a.text",
                                        "who": "$job.who", "ok": "$resume.ok"})
    assert step.literals == {"mode": "fast", "n": 3, "price": "$5"}
    assert {k: str(r) for k, r in step.refs.items()} == {"t": "$a.text", "who": "$job.who",
                                                         "ok": "$resume.ok"}
    assert step.depends_on() == {"a"} and step.reads_resume


def test_a_bare_step_reference_is_refused_with_a_did_you_mean():
    e = err(lambda: Flow("f", [Step("triage", run=noop),
                               Step("fix", run=noop, inputs={"s": "triage.summary"})]))
    assert e.field == "steps.fix.inputs.s" and "did you mean '$triage.summary'" in str(e)
    # a dotted literal that names no step is a literal
    flow = Flow("f", [Step("a", run=noop, inputs={"file": "notes.md"})])
    assert flow.step("a").literals == {"file": "notes.md"}


def test_reading_resume_needs_a_rule_that_escalates():
    e = err(lambda: Flow("f", [Step("a", run=noop), Step("b", run=noop, inputs={"ok": "$resume.ok"})]))
    assert e.field == "steps.b.inputs" and "escalate" in str(e)
    Flow("f", [Step("a", run=noop, exits=[ExitRule("ask", action="escalate")]),
               Step("b", run=noop, inputs={"ok": "$resume.ok"})])


def test_declared_inputs():
    flow = Flow("f", [Step("a", run=noop, inputs={"t": "$job.ticket"})],
                inputs={"ticket": int, "title": FlowInput(str, default="untitled")})
    assert flow.inputs["ticket"] == FlowInput(int) and flow.inputs["title"].default == "untitled"
    e = err(lambda: Flow("f", [Step("a", run=noop, inputs={"t": "$job.tickt"})], inputs={"ticket": int}))
    assert e.field == "steps.a.inputs.t" and "undeclared input 'tickt'" in str(e) and "'ticket'" in str(e)
    assert err(lambda: Flow("f", [Step("a", run=noop)], inputs={"x": complex})).field == "inputs.x"
    assert err(lambda: Flow("f", [Step("a", run=noop)], inputs={"x": FlowInput(int, default="1")})).field \
        == "inputs"
    assert err(lambda: Flow("f", [Step("a", run=noop)], inputs=["x"])).field == "inputs"


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_agent_terminals_must_be_a_boolean(bad):
    e = err(lambda: AgentSpec(["agent"], terminals=bad))
    assert e.field == "agent.terminals" and repr(bad) in e.problem
