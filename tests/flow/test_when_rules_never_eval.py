"""A `when` expression is parsed into a safe evaluator: calls, dunders, comprehensions and huge
powers are refused with the field named, and nothing is ever passed to eval."""

from __future__ import annotations

import pytest

from runtime import ExitRule, FlowError
from runtime.flow.rules import ExpressionError, compile_when


def err(fn) -> FlowError:
    with pytest.raises(FlowError) as info:
        fn()
    return info.value


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("__import__('os')", "calls are not allowed"),
        ("outputs.__class__", "attribute '__class__'"),
        ("(lambda: 1)()", "calls are not allowed"),
        ("lambda: 1", "lambda"),
        ("os.system('true')", "calls are not allowed"),
        ("os.path", "name 'os'"),
        ("outputs['a'] ** 99999", "Pow"),
        ("[x for x in outputs]", "ListComp"),
        ("outputs[1:2]", "slices"),
        ("open('/etc/passwd')", "calls are not allowed"),
        ("outputs ==", "invalid syntax"),
        ("(x := 1)", "NamedExpr"),
    ],
)
def test_bad_when_is_refused(expr, fragment):
    e = err(lambda: ExitRule("r", when=expr, action="abandon"))
    assert e.field == "exits['r'].when"
    assert fragment in str(e)


def test_when_evaluates_without_eval():
    expr = compile_when(
        "outputs.score >= 3 and inputs['mode'] in ['fast', 'safe'] and len(outputs.items) < attempt + iteration"
    )
    assert expr(outputs={"score": 4, "items": [1]}, inputs={"mode": "fast"}, attempt=1, iteration=1)
    assert not expr(
        outputs={"score": 2, "items": []}, inputs={"mode": "fast"}, attempt=1, iteration=0
    )


def test_when_repetition_is_bounded():
    expr = compile_when("'a' * 1000000000 == ''")
    with pytest.raises(ExpressionError, match="too large"):
        expr(outputs={}, inputs={}, attempt=1, iteration=0)
