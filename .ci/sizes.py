"""Fail when a module of runtime/ or actors/ grows past MAX_MODULE lines or a function past
MAX_FUNCTION lines (docstring included).  Exceptions are listed in ALLOWED with the reason."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE = 400
MAX_FUNCTION = 60
ALLOWED: dict[str, str] = {
    # "path/to/module.py" or "path/to/module.py::qualname": why it is longer
}


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = []
    for path in sorted([*root.glob("runtime/**/*.py"), *root.glob("actors/**/*.py")]):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE and rel not in ALLOWED:
            problems.append(f"{rel}: {lines} lines (max {MAX_MODULE})")
        for qualname, node in _functions(ast.parse(text)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            key = f"{rel}::{qualname}"
            if size > MAX_FUNCTION and key not in ALLOWED:
                problems.append(f"{key}: {size} lines (max {MAX_FUNCTION})")
    for line in problems:
        sys.stderr.write(line + "\n")
    return 1 if problems else 0


def _functions(tree: ast.AST, prefix: str = ""):  # type: ignore[no-untyped-def]
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, name + ".")


if __name__ == "__main__":
    raise SystemExit(main())
