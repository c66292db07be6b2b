"""An exit rule's timeout and on_timeout are refused naming the field unless they make an escalate
rule with a positive deadline; on_timeout defaults to abandon; both survive the flow codec and the
events that carry them survive the event codec."""

from __future__ import annotations

import math

import pytest

from runtime import (
    EscalationTimedOut,
    ExitRule,
    Flow,
    FlowError,
    JobPaused,
    Step,
    event_from_dict,
    event_to_dict,
)
from runtime.flow.codec import flow_from_dict, flow_to_dict


@pytest.mark.parametrize("kwargs, field, fragment", [
    ({"action": "advance", "timeout": 5}, "exits['r'].timeout", "only an escalate rule takes timeout"),
    ({"action": "abandon", "timeout": 5, "on_timeout": "fail"}, "exits['r'].timeout",
     "only an escalate rule takes timeout (action is 'abandon')"),
    ({"action": "loop", "target": "a", "max_iterations": 2, "on_timeout": "fail"}, "exits['r'].on_timeout",
     "only an escalate rule takes on_timeout"),
    ({"action": "escalate", "timeout": 0}, "exits['r'].timeout", "positive"),
    ({"action": "escalate", "timeout": -1.5}, "exits['r'].timeout", "positive"),
    ({"action": "escalate", "timeout": math.inf}, "exits['r'].timeout", "finite"),
    ({"action": "escalate", "timeout": math.nan}, "exits['r'].timeout", "finite"),
    ({"action": "escalate", "timeout": "5"}, "exits['r'].timeout", "must be a number of seconds, got str"),
    ({"action": "escalate", "timeout": True}, "exits['r'].timeout", "got bool"),
    ({"action": "escalate", "on_timeout": "fail"}, "exits['r'].on_timeout", "needs a timeout"),
    ({"action": "escalate", "timeout": 5, "on_timeout": "abandn"}, "exits['r'].on_timeout",
     "'abandn' is not one of abandon, fail, advance (did you mean 'abandon'?)"),
    ({"action": "escalate", "timeout": 5, "on_timeout": "loop"}, "exits['r'].on_timeout", "is not one of"),
])
def test_a_bad_deadline_is_refused_naming_the_field(kwargs, field, fragment):
    with pytest.raises(FlowError) as info:
        ExitRule("r", **kwargs)
    assert info.value.field == field, info.value
    assert fragment in str(info.value), info.value


def test_on_timeout_defaults_to_abandon_once_a_timeout_is_set():
    assert ExitRule("r", action="escalate").on_timeout is None  # no deadline, no timeout action
    rule = ExitRule("r", action="escalate", timeout=30)
    assert (rule.timeout, rule.on_timeout) == (30, "abandon")
    assert rule == ExitRule("r", action="escalate", timeout=30, on_timeout="abandon")


async def _noop(ctx, inputs):
    return {}


@pytest.mark.parametrize("on_timeout", [None, "abandon", "fail", "advance"])
def test_a_deadline_round_trips_through_the_flow_codec(on_timeout):
    flow = Flow("f", [
        Step("a", run=_noop, exits=[ExitRule("ask", when="True", action="escalate", timeout=90.5,
                                             on_timeout=on_timeout),
                                    ExitRule("plain", action="escalate")]),
    ])
    data = flow_to_dict(flow)
    assert data["steps"][0]["exits"][0]["timeout"] == 90.5
    assert data["steps"][0]["exits"][0]["on_timeout"] == (on_timeout or "abandon")
    back = flow_from_dict(data)
    assert back == flow
    assert back.step("a").exits[1].timeout is None and back.step("a").exits[1].on_timeout is None


def test_a_stored_flow_without_the_fields_still_loads():
    data = flow_to_dict(Flow("f", [Step("a", run=_noop, exits=[ExitRule("ask", action="escalate")])]))
    for rule in data["steps"][0]["exits"]:
        del rule["timeout"], rule["on_timeout"]  # as stored before the fields existed
    assert flow_from_dict(data).step("a").exits[0] == ExitRule("ask", action="escalate")


def test_the_deadline_events_round_trip_through_the_event_codec():
    paused = JobPaused(job_id="j", seq=4, ts=10.0, step="a", rule="ask", deadline=70.0)
    timed_out = EscalationTimedOut(job_id="j", seq=5, ts=70.0, step="a", rule="ask", action="fail")
    for event in (paused, timed_out, JobPaused(job_id="j", seq=4, ts=1.0, step="a", rule="$resume")):
        assert event_from_dict(event_to_dict(event)) == event
    assert event_to_dict(timed_out)["type"] == "escalation_timed_out"
    old = event_to_dict(paused)
    del old["deadline"]  # logged before JobPaused had a deadline
    assert event_from_dict(old).deadline is None
