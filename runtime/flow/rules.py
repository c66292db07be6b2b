"""Safe ``when`` expressions for exit rules.

A ``when`` string is parsed with :mod:`ast` and checked against a whitelist of node types at
flow construction; it is then *interpreted* by walking the tree.  Nothing is compiled and
nothing is passed to ``eval``.

The names an expression may use are ``outputs``, ``inputs``, ``attempt`` and ``iteration``;
the constants ``True``/``False``/``None``; and the pure functions ``len``, ``min``, ``max``,
``abs``, ``int``, ``float``, ``str``, ``bool``.  ``outputs.status`` is sugar for
``outputs["status"]``: attribute syntax is a mapping lookup, never ``getattr``, and names that
start with an underscore are refused.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["ALLOWED_NAMES", "Expression", "ExpressionError", "compile_when"]

ALLOWED_NAMES = ("outputs", "inputs", "attempt", "iteration")

_FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": len, "min": min, "max": max, "abs": abs,
    "int": int, "float": float, "str": str, "bool": bool,
}

_BINOPS: Mapping[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMPOPS: Mapping[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_UNARY: Mapping[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
}
_MAX_LEN = 512  # longest expression accepted
_MAX_SEQ = 10_000  # longest str/list a '*' may produce


class ExpressionError(ValueError):
    """A ``when`` expression is invalid or reaches outside the whitelist."""


def _refuse(node: ast.AST, what: str) -> ExpressionError:
    col = getattr(node, "col_offset", None)
    where = f" at column {col + 1}" if col is not None else ""
    return ExpressionError(f"{what}{where}")


def _check(node: ast.AST) -> None:
    """Raise :class:`ExpressionError` on the first node outside the whitelist."""
    match node:
        case ast.Expression(body=body):
            _check(body)
        case ast.BoolOp(values=values):
            for v in values:
                _check(v)
        case ast.UnaryOp(op=op, operand=operand):
            if type(op) not in _UNARY:
                raise _refuse(node, f"operator {type(op).__name__} is not allowed")
            _check(operand)
        case ast.BinOp(op=op, left=left, right=right):
            if type(op) not in _BINOPS:
                raise _refuse(node, f"operator {type(op).__name__} is not allowed")
            _check(left)
            _check(right)
        case ast.Compare(left=left, ops=ops, comparators=comps):
            for cmp in ops:
                if type(cmp) not in _CMPOPS:
                    raise _refuse(node, f"comparison {type(cmp).__name__} is not allowed")
            _check(left)
            for c in comps:
                _check(c)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            _check(test)
            _check(body)
            _check(orelse)
        case ast.Constant(value=value):
            if not isinstance(value, str | int | float | bool | type(None)):
                raise _refuse(node, f"constant {value!r} is not allowed")
        case ast.Name(id=name):
            if name not in ALLOWED_NAMES:
                raise _refuse(
                    node,
                    f"name {name!r} is not allowed (use {', '.join(ALLOWED_NAMES)})",
                )
        case ast.Attribute(value=value, attr=attr):
            if attr.startswith("_"):
                raise _refuse(node, f"attribute {attr!r} is not allowed")
            _check(value)
        case ast.Subscript(value=value, slice=index):
            if isinstance(index, ast.Slice):
                raise _refuse(node, "slices are not allowed")
            _check(value)
            _check(index)
        case ast.List(elts=elts) | ast.Tuple(elts=elts) | ast.Set(elts=elts):
            for e in elts:
                _check(e)
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]) if fname in _FUNCTIONS:
            for a in args:
                if isinstance(a, ast.Starred):
                    raise _refuse(a, "*args are not allowed")
                _check(a)
        case ast.Call():
            raise _refuse(node, f"calls are not allowed except {', '.join(_FUNCTIONS)}()")
        case ast.Lambda():
            raise _refuse(node, "lambda is not allowed")
        case _:
            raise _refuse(node, f"{type(node).__name__} is not allowed")


def _lookup(container: Any, key: Any, node: ast.AST) -> Any:
    if isinstance(container, Mapping | list | tuple | str):
        try:
            return container[key]
        except (KeyError, IndexError, TypeError):
            raise _refuse(node, f"no key {key!r}") from None
    raise _refuse(node, f"cannot index a {type(container).__name__}")


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    match node:
        case ast.Expression(body=body):
            return _eval(body, env)
        case ast.BoolOp(op=ast.And(), values=values):
            result: Any = True
            for v in values:
                result = _eval(v, env)
                if not result:
                    return result
            return result
        case ast.BoolOp(values=values):
            result = False
            for v in values:
                result = _eval(v, env)
                if result:
                    return result
            return result
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](_eval(operand, env))
        case ast.BinOp(op=op, left=left, right=right):
            a, b = _eval(left, env), _eval(right, env)
            if isinstance(op, ast.Mult) and any(isinstance(x, str | list | tuple) for x in (a, b)):
                n = b if isinstance(a, str | list | tuple) else a
                seq = a if isinstance(a, str | list | tuple) else b
                if isinstance(n, int) and len(seq) * max(n, 0) > _MAX_SEQ:
                    raise _refuse(node, "repetition result too large")
            return _BINOPS[type(op)](a, b)
        case ast.Compare(left=left, ops=ops, comparators=comps):
            a = _eval(left, env)
            for cmp, c in zip(ops, comps, strict=True):
                b = _eval(c, env)
                if not _CMPOPS[type(cmp)](a, b):
                    return False
                a = b
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _eval(body, env) if _eval(test, env) else _eval(orelse, env)
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return env[name]
        case ast.Attribute(value=value, attr=attr):
            return _lookup(_eval(value, env), attr, node)
        case ast.Subscript(value=value, slice=index):
            return _lookup(_eval(value, env), _eval(index, env), node)
        case ast.List(elts=elts):
            return [_eval(e, env) for e in elts]
        case ast.Tuple(elts=elts):
            return tuple(_eval(e, env) for e in elts)
        case ast.Set(elts=elts):
            return {_eval(e, env) for e in elts}
        case ast.Call(func=ast.Name(id=fname), args=args):
            return _FUNCTIONS[fname](*(_eval(a, env) for a in args))
    raise _refuse(node, f"{type(node).__name__} is not allowed")  # unreachable after _check


@attrs.frozen
class Expression:
    """A checked ``when`` expression; call it with the evaluation names."""

    source: str
    _tree: ast.Expression = attrs.field(repr=False, eq=False)

    def __call__(
        self, *, outputs: Mapping[str, Any], inputs: Mapping[str, Any], attempt: int, iteration: int
    ) -> bool:
        env = {"outputs": outputs, "inputs": inputs, "attempt": attempt, "iteration": iteration}
        try:
            return bool(_eval(self._tree, env))
        except ExpressionError as exc:
            raise ExpressionError(f"when {self.source!r}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ExpressionError(f"when {self.source!r}: {type(exc).__name__}: {exc}") from None


def compile_when(source: str) -> Expression:
    """Parse and check ``source``; raise :class:`ExpressionError` naming what is refused."""
    if not isinstance(source, str):
        raise ExpressionError(f"expected a string, got {type(source).__name__}")
    if len(source) > _MAX_LEN:
        raise ExpressionError(f"expression longer than {_MAX_LEN} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid syntax at column {exc.offset}: {exc.msg}") from None
    _check(tree)
    return Expression(source, tree)
