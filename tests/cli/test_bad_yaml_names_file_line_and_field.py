"""A YAML flow that is wrong is refused whole, with an error naming the file, the line and the
field, and what is wrong there; nothing in it runs."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from runtime import Flow, Step
from runtime.cli.yaml import FlowLoadError, load_flow, load_flow_text


def _flow(steps: str, head: str = "name: f\n") -> str:
    return head + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")


BAD = {
    # unknown keys
    "unknown step key": (_flow("""\
        a:
          command: [echo]
          retries: 3
        """), 5, "steps.a.retries", "unknown field 'retries'"),
    "misspelt top-level key": ("name: f\nstepz: {}\n", 2, "stepz", "did you mean 'steps'"),
    "unknown exit key": (_flow("""\
        a:
          command: [echo]
          exits:
            ok: {when: "True", actoin: advance}
        """), 6, "steps.a.exits.ok.actoin", "did you mean 'action'"),
    "unknown agent key": (_flow("""\
        a:
          agent: {command: [echo], permission: allow}
          prompt: hi
        """), 4, "steps.a.agent.permission", "unknown field"),
    # wrong types
    "timeout as a string": (_flow("""\
        a:
          command: [echo]
          timeout: '5'
        """), 5, "steps.a.timeout", "expected a number, got str"),
    "timeout as a bool": (_flow("a: {command: [echo], timeout: yes}\n"), 3, "steps.a.timeout", "got bool"),
    "negative timeout": (_flow("a: {command: [echo], timeout: -1}\n"), 3, "steps.a.timeout", "positive"),
    "max_attempts as a float": (_flow("""\
        a:
          command: [echo]
          on_error:
            action: retry
            max_attempts: 2.5
        """), 7, "steps.a.on_error.max_attempts", "expected an integer, got float"),
    "name as a number": ("name: 5\nsteps: {a: {command: [echo]}}\n", 1, "name", "expected str, got int"),
    "after as a number": (_flow("""\
        a: {command: [echo]}
        b:
          command: [echo]
          after: 3
        """), 6, "steps.b.after", "expected a string or a list of strings"),
    "when as a number": (_flow("""\
        a:
          command: [echo]
          exits:
            - {name: e, when: 3, action: abandon}
        """), 6, "steps.a.exits.e.when", "expected str, got int"),
    "inputs as a list": (_flow("a: {command: [echo], inputs: [x]}\n"), 3, "steps.a.inputs", "mapping"),
    "command as a mapping": (_flow("a: {command: {x: 1}}\n"), 3, "steps.a.command", "list of strings"),
    "prompt as a list": (_flow("a: {agent: [echo], prompt: [hi]}\n"), 3, "steps.a.prompt", "expected str"),
    "steps as a number": ("name: f\nsteps: 3\n", 2, "steps", "expected a mapping or a list"),
    "a step as a string": ("name: f\nsteps:\n  - a\n", 3, "steps[0]", "must be a mapping"),
    "document as a list": ("- a\n- b\n", 1, "(document)", "must be a mapping"),
    "missing name": ("steps: {a: {command: [echo]}}\n", 1, "name", "missing required field 'name'"),
    # wrong values
    "unknown action": (_flow("""\
        a:
          command: [echo]
          exits:
            - when: "True"
              action: abandn
        """), 7, "steps.a.exits[0].action", "did you mean 'abandon'"),
    "unknown on_error action": (_flow("a: {command: [echo], on_error: retyr}\n"), 3, "steps.a.on_error.action",
                                "did you mean 'retry'"),
    "two kinds": (_flow("""\
        a:
          command: [echo]
          run: examples.steps:fix
        """), 3, "steps.a", "exactly one of run, command or agent"),
    "no kind": (_flow("a:\n"), 3, "steps.a", "exactly one of"),
    "prompt on a command": (_flow("""\
        a:
          command: [echo]
          prompt: hi
        """), 5, "steps.a.prompt", "only an agent step"),
    "agent without a prompt": (_flow("a: {agent: [echo]}\n"), 3, "steps.a.prompt", "needs a prompt"),
    "bad permissions": (_flow("""\
        a:
          agent: {command: [echo], permissions: maybe}
          prompt: hi
        """), 4, "steps.a.agent.permissions", "'maybe' is not one of"),
    "zero agent start_timeout": (_flow("""\
        a:
          agent: {command: [echo], start_timeout: 0}
          prompt: hi
        """), 4, "steps.a.agent.start_timeout", "seconds"),
    "empty agent auth": (_flow("""\
        a:
          agent: {command: [echo], auth: ""}
          prompt: hi
        """), 4, "steps.a.agent.auth", "authMethods id"),
    "terminals not a boolean": (_flow("""\
        a:
          agent: {command: [echo], terminals: "yes"}
          prompt: hi
        """), 4, "steps.a.agent.terminals", "expected true or false, got str 'yes'"),
    "loop without a bound": (_flow("""\
        a: {command: [echo]}
        b:
          command: [echo]
          after: [a]
          exits:
            - name: again
              action: loop
              target: a
        """), 8, "steps.b.exits.again.max_iterations", "max_iterations >= 1"),
    "duplicate key": (_flow("""\
        a: {command: [echo]}
        a: {command: [ls]}
        """), 4, "steps.a", "duplicate key 'a'"),
    "invalid yaml": ("name: f\nsteps: [a\n", 3, "(yaml)", "invalid YAML"),
    # python step references
    "run without a colon": (_flow("a: {run: os.getcwd}\n"), 3, "steps.a.run", "module:function"),
    "run of a missing module": (_flow("a: {run: no_such_module_zz:fn}\n"), 3, "steps.a.run",
                                "cannot import module 'no_such_module_zz'"),
    "run of a missing function": (_flow("a: {run: examples.steps:nope}\n"), 3, "steps.a.run", "no attribute"),
    "run of a non-callable": (_flow("a: {run: 'os:sep'}\n"), 3, "steps.a.run", "not callable"),
    # unknown step references
    "after an unknown step": (_flow("""\
        triage: {command: [echo]}
        fix:
          command: [echo]
          after: [triag]
        """), 6, "steps.fix.after", "unknown step 'triag' (did you mean 'triage'?)"),
    "input from an unknown step": (_flow("""\
        a:
          command: [echo]
          inputs:
            text: $nope.text
        """), 6, "steps.a.inputs.text", "unknown step 'nope'"),
    "prompt from an unknown step": (_flow("""\
        a:
          agent: [echo]
          prompt: "fix {triage.summary}"
        """), 5, "steps.a.prompt", "unknown step 'triage'"),
    "bad reference root": (_flow("a: {command: [echo], inputs: {x: $jobs.x}}\n"), 3, "steps.a.inputs.x",
                           "unknown step 'jobs' in $jobs.x (did you mean 'job'?)"),
    "loop to an unknown step": (_flow("""\
        a:
          command: [echo]
          exits:
            - {name: again, action: loop, target: zz, max_iterations: 2}
        """), 6, "steps.a.exits.again.target", "unknown step 'zz'"),
    # cycles
    "cycle through after": (_flow("""\
        a:
          command: [echo]
          after: [b]
        b:
          command: [echo]
          after: [a]
        """), 3, "steps.a", "cycle: a -> b -> a"),
    "cycle through inputs": (_flow("""\
        a:
          command: [echo]
          inputs: {x: $c.x}
        b:
          command: [echo]
          inputs: {x: $a.x}
        c:
          command: [echo]
          after: [b]
        """), 3, "steps.a", "cycle"),
    "step waits for itself": (_flow("a: {command: [echo], after: [a]}\n"), 3, "steps.a.after", "itself"),
}


INJECTIONS = {
    "__import__('os').system('id')": "calls are not allowed",
    "outputs.__class__": "attribute '__class__' is not allowed",
    "outputs.__class__.__mro__[1].__subclasses__()": "not allowed",
    "(lambda: 1)()": "calls are not allowed",
    "lambda: True": "lambda is not allowed",
    "[x for x in outputs]": "ListComp is not allowed",
    "open('/etc/passwd').read()": "not allowed",
    "getattr(outputs, 'x')": "calls are not allowed",
    "os.system('id')": "calls are not allowed",
    "os.environ": "name 'os' is not allowed",
    "__builtins__": "name '__builtins__' is not allowed",
    "globals()": "calls are not allowed",
    "(x := 1)": "NamedExpr is not allowed",
    "outputs.x ==": "invalid syntax",
    "f'{outputs}'": "JoinedStr is not allowed",
    "outputs[1:2]": "slices are not allowed",
}


def _check(exc: FlowLoadError, file: str, line: int, field: str, fragment: str) -> None:
    message = str(exc)
    assert message.startswith(f"{file}:{line}: {field}: "), message
    assert (exc.file, exc.line, exc.field) == (file, line, field), message
    assert fragment in message, message


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_flow_names_file_line_and_field(tmp_path, case):
    text, line, field, fragment = BAD[case]
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    _check(info.value, str(path), line, field, fragment)


@pytest.mark.parametrize("expr", list(INJECTIONS))
def test_when_injection_is_refused_at_load(tmp_path, expr):
    text = _flow(f"""\
        a: {{command: [echo]}}
        b:
          command: [echo]
          after: [a]
          exits:
            - name: sneaky
              when: {json.dumps(expr)}
              action: abandon
        """)
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    _check(info.value, str(path), 9, "steps.b.exits.sneaky.when", INJECTIONS[expr])


def test_a_refused_file_runs_nothing(tmp_path):
    """Loading imports the step functions but runs none, and an invalid file builds no flow."""
    marker = tmp_path / "ran"
    module = tmp_path / "side_effects.py"
    module.write_text(f"async def step(ctx, inputs):\n    open({str(marker)!r}, 'w').close()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(FlowLoadError):
            load_flow_text(_flow("""\
                a: {run: side_effects:step}
                b: {run: side_effects:step, after: [zz]}
                """))
        flow = load_flow_text(_flow("a: {run: side_effects:step}\n"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("side_effects", None)
    assert isinstance(flow, Flow) and isinstance(flow.steps[0], Step)
    assert not marker.exists()


@pytest.mark.parametrize("decl, field, problem", [
    ("{t: integer}", "inputs.t", "unknown type 'integer'"),
    ("{t: {type: int, default: x}}", "inputs.t.default", "must be int, got str 'x'"),
    ("{t: {kind: int}}", "inputs.t", "must be a type name"),
])
def test_bad_input_declarations_name_the_field(decl, field, problem):
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(f"name: x\ninputs: {decl}\nsteps:\n  a: {{command: [echo]}}\n", "f.yaml")
    assert info.value.field == field and problem in info.value.problem and info.value.line == 2
