"""Stable names for vertices and their tables.

A vertex's name hashes its operator kind, its parameters (the *source* of user functions,
normalised through the AST, plus the values they close over) and the names of its inputs.
So a name is the same in every process and on every deploy, does not depend on the module
being `__main__` or on local variable names, and changes exactly when the computation
upstream of the vertex changes.
"""

from __future__ import annotations

import ast
import enum
import functools
import hashlib
import inspect
import linecache
import textwrap
import threading
import types
import typing
from typing import Any

from stepping_django.engine.index import Index


def digest(text: str, n: int = 12) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:n]


def vertex_name(kind: str, params: str, inputs: tuple[str, ...]) -> str:
    return f"{kind}_{digest('|'.join((kind, params, *inputs)))}"


def fingerprint(value: Any) -> str:
    """A text that changes when `value`'s behaviour as an operator parameter changes."""
    if isinstance(value, Index):
        return value.fingerprint()
    custom = getattr(value, "st_fingerprint", None)
    if custom is not None and callable(custom):
        return str(custom())
    if isinstance(value, functools.partial):
        args = ",".join(fingerprint(a) for a in value.args)
        kw = ",".join(f"{k}={fingerprint(v)}" for k, v in sorted(value.keywords.items()))
        return f"partial({fingerprint(value.func)},{args},{kw})"
    if isinstance(value, types.FunctionType):
        return function_fingerprint(value)
    if isinstance(value, types.MethodType) and isinstance(value.__func__, types.FunctionType):
        # a bound method: its source, and what it is bound to
        return f"method:{function_fingerprint(value.__func__)}|{fingerprint(value.__self__)}"
    if isinstance(value, type):
        return type_fingerprint(value)
    if isinstance(value, (types.BuiltinFunctionType, types.MethodType)):
        return f"builtin:{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(fingerprint(v) for v in value) + ")"
    if isinstance(value, (set, frozenset)):  # sorted: set order depends on the hash seed
        return "{" + ",".join(sorted(fingerprint(v) for v in value)) + "}"
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return repr(value)
    origin = typing.get_origin(value)
    if origin is not None:
        args = ",".join(fingerprint(a) for a in typing.get_args(value))
        return f"{fingerprint(origin)}[{args}]"
    call = next(
        (c.__dict__["__call__"] for c in type(value).__mro__ if "__call__" in c.__dict__), None
    )
    if isinstance(call, types.FunctionType):  # an instance of a class with __call__
        return f"callable:{type(value).__qualname__}:{function_fingerprint(call)}"
    return f"object:{type(value).__qualname__}"


def type_fingerprint(cls: type, seen: frozenset[type] = frozenset()) -> str:
    """A class by its qualified name (never its module, which may be `__main__`); a row
    class also by its fields and their types, so a table's name changes with its rows'
    layout (rows are stored positionally)."""
    from stepping_django.engine.data import Data

    if not issubclass(cls, Data) or cls is Data or cls in seen:
        return f"type:{cls.__qualname__}"
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    inner = seen | {cls}
    fields = ",".join(
        f"{name}:{_annotation(hints.get(name, object), inner)}" for name in cls.__st_fields__
    )
    return f"type:{cls.__qualname__}({fields})"


def _annotation(tp: Any, seen: frozenset[type]) -> str:
    if isinstance(tp, type):
        return type_fingerprint(tp, seen)
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ",".join(_annotation(a, seen) for a in typing.get_args(tp))
        return f"{_annotation(origin, seen)}[{args}]"
    return fingerprint(tp)


@functools.lru_cache(maxsize=256)
def _parsed(filename: str, mtime_key: int) -> ast.Module | None:
    source = "".join(linecache.getlines(filename))
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _lambda_source(fn: types.FunctionType) -> str | None:
    """The exact source of a lambda, found among the lambdas on its first line."""
    code = fn.__code__
    filename = code.co_filename
    lines = linecache.getlines(filename)
    tree = _parsed(filename, hash(tuple(lines)))
    if tree is None:
        return None
    candidates = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno
    ]
    if len(candidates) > 1:
        # The smallest lambda holding every instruction of the code. Zero-width positions
        # (RESUME, the implicit return) point at column 0 and must not count.
        spans = [
            ((ln, col), (end_ln, end_col))
            for ln, end_ln, col, end_col in code.co_positions()
            if ln is not None
            and end_ln is not None
            and col is not None
            and end_col is not None
            and (ln, col) != (end_ln, end_col)
        ]
        if spans:
            start = min(a for a, _ in spans)
            end = max(b for _, b in spans)
            containing = [
                c
                for c in candidates
                if (c.lineno, c.col_offset) <= start
                and end <= (c.end_lineno or start[0], c.end_col_offset or start[1])
            ]
            if containing:
                candidates = sorted(
                    containing,
                    key=lambda c: (
                        (c.end_lineno or 0) - c.lineno,
                        (c.end_col_offset or 0) - c.col_offset,
                    ),
                )
    if not candidates:
        return None
    return ast.unparse(candidates[0])


_guard = threading.local()


def function_fingerprint(fn: types.FunctionType) -> str:
    """The function's source, plus what it uses from outside: defaults, closure cells and
    the module globals it names (constants, helper functions, classes)."""
    active: set[types.CodeType] | None = getattr(_guard, "codes", None)
    if active is None:
        active = _guard.codes = set()
    code = fn.__code__
    if code in active:  # a function that reaches itself
        return f"recursive:{fn.__qualname__}"
    active.add(code)
    try:
        return _function_fingerprint(fn)
    finally:
        active.discard(code)


def _function_fingerprint(fn: types.FunctionType) -> str:
    source: str | None
    if fn.__name__ == "<lambda>":
        source = _lambda_source(fn)
    else:
        try:
            source = ast.unparse(ast.parse(textwrap.dedent(inspect.getsource(fn))))
        except (OSError, TypeError, SyntaxError):
            source = None
    if source is None:
        code = fn.__code__
        source = f"code:{code.co_code.hex()}:{code.co_names}:{code.co_consts!r}"
    extra = []
    if fn.__defaults__:
        extra.append("defaults=" + fingerprint(fn.__defaults__))
    if fn.__closure__:
        cells = []
        for cell in fn.__closure__:
            try:
                cells.append(fingerprint(cell.cell_contents))
            except ValueError:
                cells.append("<empty>")
        extra.append("closure=" + ",".join(cells))
    used = [
        f"{name}={fingerprint(value)}"
        for name in sorted(_names(fn.__code__))
        if name in fn.__globals__
        and not isinstance(value := fn.__globals__[name], types.ModuleType)
    ]
    if used:
        extra.append("globals=" + ",".join(used))
    return source + ("|" + "|".join(extra) if extra else "")


def _names(code: types.CodeType) -> set[str]:
    """Every global (or attribute) name the code, and the code nested in it, refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names
