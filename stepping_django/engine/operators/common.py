"""What every operator module shares: telling streams from concrete Z-sets, and accumulation."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any

from stepping_django.engine.graph import CompileError, Stream
from stepping_django.engine.zset import ZSetPython


def is_stream(*args: Any) -> bool:
    """True when compiling (all arguments are streams), False for concrete Z-sets."""
    flags = [isinstance(a, Stream) for a in args]
    if any(flags) and not all(flags):
        raise CompileError("an operator was given both a stream and a concrete Z-set")
    return bool(flags) and flags[0]


def concrete(z: Any) -> ZSetPython[Any]:
    if isinstance(z, ZSetPython):
        return z
    to_python = getattr(z, "to_python", None)
    if to_python is None:
        raise TypeError(f"expected a Z-set, got {type(z).__name__}")
    return to_python()  # type: ignore[no-any-return]


def same_group(*streams: Stream[Any]) -> Any:
    groups = {None if s.group is None else s.group for s in streams}
    if len(groups) > 1:
        raise CompileError("cannot combine a grouped stream with an ungrouped one")
    return streams[0].group


def accumulate(pairs: Iterable[tuple[Any, int]]) -> ZSetPython[Any]:
    """Sum weights per row and drop the zeros."""
    out: dict[Any, int] = {}
    get = out.get
    for row, c in pairs:
        out[row] = get(row, 0) + c
    return ZSetPython.wrap({k: v for k, v in out.items() if v})


def add_into(out: dict[Any, int], row: Any, c: int) -> None:
    n = out.get(row, 0) + c
    if n:
        out[row] = n
    else:
        del out[row]


def return_type(f: Callable[..., Any]) -> Any:
    """The declared result type of a row function (object when unknown)."""
    if isinstance(f, type):
        return f
    try:
        return typing.get_type_hints(f).get("return", object)
    except Exception:
        return object
