"""Hostile flow files: each is refused whole with one line naming the file, never a traceback,
a hang or a parse of something too big to parse."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from runtime.cli.yaml import (
    DEFAULT_MAX_FLOW_BYTES,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    FlowLoadError,
    load_flow,
    load_flow_text,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = "name: small\nsteps:\n  a: {command: [echo, hi]}\n"


def refused(path: Path | str, **kw) -> FlowLoadError:
    with pytest.raises(FlowLoadError) as info:
        load_flow(path, **kw)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    return info.value


def corral(*args: object, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False, env=env)


# -- not a flow file at all ----------------------------------------------------------------------


def test_a_missing_file_a_directory_and_an_empty_file_say_so_plainly(tmp_path):
    missing = refused(tmp_path / "missing.yaml")
    assert str(missing) == f"{tmp_path / 'missing.yaml'}: cannot read: no such file"
    assert "is a directory" in str(refused(tmp_path))
    for text in ("", "\n\n  \n", "# only a comment\n"):
        (tmp_path / "empty.yaml").write_text(text)
        exc = refused(tmp_path / "empty.yaml")
        assert str(exc).startswith(f"{tmp_path / 'empty.yaml'}: empty file"), str(exc)
        assert "NoneType" not in str(exc) and ":?" not in str(exc)


def test_a_binary_or_non_utf8_file_is_not_utf8_text(tmp_path):
    binary = tmp_path / "image.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    assert "not UTF-8 text" in str(refused(binary))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\nsteps: {}\n".encode("latin-1"))
    exc = refused(latin1)
    assert "not UTF-8 text" in str(exc) and exc.line == 1
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(SMALL.encode() + b"\x00\x00")  # valid UTF-8, still not text
    assert "not UTF-8 text" in str(refused(nul))


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.encode())
    assert load_flow(path).name == "small"


# -- too big: refused by size before any parsing ---------------------------------------------------


def test_a_file_over_the_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text(SMALL + "# padding\n" * (DEFAULT_MAX_FLOW_BYTES // 10 + 1))
    assert big.stat().st_size > DEFAULT_MAX_FLOW_BYTES

    def no_parsing(*args, **kwargs):
        raise AssertionError("the parser was reached")

    for loader in _pyyaml_loaders():  # whichever PyYAML loader the reader would build
        monkeypatch.setattr(loader, "__init__", no_parsing)
    exc = refused(big)
    assert f"{big.stat().st_size} bytes is larger than the flow file limit of {DEFAULT_MAX_FLOW_BYTES}" in str(exc)
    assert "--max-flow-bytes" in str(exc)
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    assert "larger than the flow file limit of 10 bytes" in str(refused(small, max_bytes=10))


def test_the_limit_is_settable(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(SMALL + "# padding\n" * (DEFAULT_MAX_FLOW_BYTES // 10 + 1))
    assert load_flow(big, max_bytes=2 * DEFAULT_MAX_FLOW_BYTES).name == "small"
    assert load_flow(big, max_bytes=None).name == "small"
    with pytest.raises(ValueError):
        load_flow(big, max_bytes=-1)


def test_the_read_is_bounded_for_a_file_that_never_ends():
    # /dev/zero has no size to check: the read itself stops at the limit
    assert "larger than the flow file limit of 4096 bytes" in str(refused("/dev/zero", max_bytes=4096))


def _pyyaml_loaders() -> set[type]:
    return {yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)}


def test_the_c_loader_is_used_when_pyyaml_has_it(monkeypatch):
    built: list[type] = []
    for loader in _pyyaml_loaders():
        def spy(self, *args, _init=loader.__init__, **kwargs):
            built.append(type(self))
            _init(self, *args, **kwargs)

        monkeypatch.setattr(loader, "__init__", spy)
    assert load_flow_text(SMALL).name == "small"
    assert built == [yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader]


# -- documents built to hurt the parser -------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 20_000, 500_000])
def test_deep_nesting_is_refused_cleanly(tmp_path, depth):
    # 500k levels overflow the C stack of PyYAML's C composer (a segfault): it must never get there
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nsteps: {a: {command: [echo], inputs: {x: " + "[" * depth + "]" * depth + "}}}\n")
    exc = refused(path, max_bytes=None)
    assert exc.line == 2 and f"nested deeper than {MAX_DEPTH} levels" in str(exc)


def test_deep_block_nesting_is_refused_cleanly(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nsteps:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(300)))
    assert f"nested deeper than {MAX_DEPTH} levels" in str(refused(path))


def test_nesting_within_the_limit_loads(tmp_path):
    depth = MAX_DEPTH - 6  # document -> steps -> a -> inputs -> x -> ...
    path = tmp_path / "ok.yaml"
    path.write_text("name: ok\nsteps: {a: {command: [echo], inputs: {x: " + "[" * depth + "]" * depth + "}}}\n")
    value = load_flow(path).steps[0].inputs["x"]
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


BILLION_LAUGHS = """\
name: lol
steps:
  a:
    command: [echo]
    inputs:
      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]
      l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]
      l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]
      l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]
      l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]
      l5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]
      l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]
      l7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]
      l8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]
"""


def test_billion_laughs_is_refused_not_expanded(tmp_path):
    path = tmp_path / "lol.yaml"
    path.write_text(BILLION_LAUGHS)
    exc = refused(path)
    assert f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes" in str(exc)
    assert exc.line == 11  # l5: the first alias past the bound (l4 is 66k nodes), not the end of the file


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nsteps:\n  a:\n    command: [echo]\n    inputs: &me {again: *me}\n")
    exc = refused(path)
    assert exc.line == 5 and "refers to a collection that contains it" in str(exc)


def test_small_aliases_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "merge.yaml"
    # a scalar alias: fine
    path.write_text("name: merged\nsteps:\n  a: {command: [echo, &w hello]}\n  b: {command: [echo, *w]}\n")
    flow = load_flow(path)
    assert list(flow.steps[1].command) == ["echo", "hello"]
    path.write_text(textwrap.dedent("""\
        name: merged
        steps:
          a: &base {command: [echo, a], timeout: 5}
          b: {<<: *base, command: [echo, b]}
        """))
    a, b = load_flow(path).steps
    assert a.timeout == 5
    assert (b.timeout, list(b.command)) == (5, ["echo", "b"])


def test_two_documents_and_a_huge_integer_are_refused(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(SMALL + "---\n" + SMALL)
    exc = refused(path)
    assert exc.line == 4 and "single YAML document" in str(exc)
    path.write_text(SMALL.replace("small", "small\ntimeout: " + "9" * 10_000))
    assert "invalid YAML" in str(refused(path))


def test_duplicate_keys_and_yaml_errors_keep_their_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: d\nsteps:\n  a: {command: [echo]}\n  a: {command: [echo]}\n")
    exc = refused(path)
    assert (exc.line, exc.field) == (4, "steps.a") and "duplicate key 'a'" in str(exc)
    path.write_text("name: d\nsteps:\n  a: {command: [echo]\n")
    exc = refused(path)
    assert exc.line == 4 and "invalid YAML" in str(exc)


# -- step modules -------------------------------------------------------------------------------------


def test_a_step_module_with_a_syntax_error_names_module_and_line(tmp_path, monkeypatch):
    (tmp_path / "broken_steps_mod.py").write_text("def fine(ctx, inputs):\n    return {}\n\ndef bad(:\n")
    (tmp_path / "raising_steps_mod.py").write_text("x = 1\nraise RuntimeError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "flow.yaml"
    path.write_text("name: f\nsteps:\n  a:\n    run: broken_steps_mod:fine\n")
    exc = refused(path)
    assert (exc.line, exc.field) == (4, "steps.a.run")
    assert f"cannot import module 'broken_steps_mod': syntax error at {tmp_path / 'broken_steps_mod.py'}:4" \
        in str(exc)
    path.write_text("name: f\nsteps:\n  a:\n    run: raising_steps_mod:fine\n")
    exc = refused(path)
    assert "importing module 'raising_steps_mod' raised RuntimeError" in str(exc)
    assert f"{tmp_path / 'raising_steps_mod.py'}:2: no config" in str(exc)


# -- the command line: exit 2, one line, no traceback ------------------------------------------------


def test_corral_run_refuses_hostile_files_in_one_line(tmp_path):
    (tmp_path / "broken_steps_mod.py").write_text("def bad(:\n")
    cases = {
        "missing.yaml": (None, "no such file"),
        "binary.yaml": (b"\x00\xff\xfe\x89PNG", "not UTF-8 text"),
        "empty.yaml": (b"", "empty file"),
        "deep.yaml": (b"name: x\nsteps: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested deeper than"),
        "lol.yaml": (BILLION_LAUGHS.encode(), "aliases expand"),
        "syntax.yaml": (b"name: f\nsteps:\n  a: {run: 'broken_steps_mod:bad'}\n", "syntax error at"),
    }
    for name, (content, fragment) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        result = corral("run", tmp_path / name, "--store", tmp_path / "s.db", cwd=tmp_path)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.count("\n") == 1 and str(tmp_path / name) in result.stderr, (name, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
    directory = corral("run", tmp_path, "--store", tmp_path / "s.db", cwd=tmp_path)
    assert directory.returncode == 2 and directory.stderr.count("\n") == 1
    assert "is a directory" in directory.stderr and str(tmp_path) in directory.stderr
    assert not (tmp_path / "s.db").exists()  # nothing ran


def test_corral_run_max_flow_bytes(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(SMALL)
    result = corral("run", flow, "--max-flow-bytes", "10", "--store", tmp_path / "s.db")
    assert result.returncode == 2 and "larger than the flow file limit of 10 bytes" in result.stderr
    env = {**os.environ, "CORRAL_MAX_FLOW_BYTES": "10"}
    result = corral("run", flow, "--store", tmp_path / "s.db", env=env)
    assert result.returncode == 2 and "limit of 10 bytes" in result.stderr
    result = corral("run", flow, "--max-flow-bytes", "1000", "--store", tmp_path / "s.db", "--json")
    assert result.returncode == 0, result.stderr
