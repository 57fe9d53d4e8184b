"""group, per_group, flatten: run a sub-query once per group key.

A grouped stream holds `Pair(row, key)`. `group` tags each row with its key (linear,
a map); operators applied inside `per_group` see grouped streams and keep their state per
key (each stateful operator adds the key to its state's index); `flatten` returns the
`Pair(row, key)` rows as an ordinary Z-set. From scratch, a grouped value is a dict of
key -> Z-set, the sub-query runs on each, and groups with no rows do not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from stepping_django.engine.data import Pair
from stepping_django.engine.graph import CompileError, Stream
from stepping_django.engine.index import Index
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.operators.map import MapVertex
from stepping_django.engine.zset import ZSetPython


class Grouped:
    """A from-scratch grouped value: group key -> Z-set of the group's rows."""

    def __init__(self, groups: dict[Any, ZSetPython[Any]], by: Index[Any, Any]) -> None:
        self.groups = groups
        self.by = by

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grouped) and self.groups == other.groups

    __hash__ = None  # type: ignore[assignment]


class _Tag:
    """Tags a row with its group key; a class so its fingerprint is the index's."""

    def __init__(self, by: Index[Any, Any]) -> None:
        self.by = by
        self.f = by.f

    def __call__(self, row: Any) -> Pair[Any, Any]:
        return Pair(row, self.f(row))

    def st_fingerprint(self) -> str:
        return f"group({self.by.fingerprint()})"


def group_index(by: Index[Any, Any]) -> Index[Any, Any]:
    """The index on `Pair(row, key)` rows that reads the key."""
    return Index(
        tuple(f"right{i}" for i in range(len(by.names))) if by.is_composite else ("right",),
        by.key_types,
        by.ascending,
        _right,
        by.is_composite,
    )


def _right(p: Pair[Any, Any]) -> Any:
    return p.right


def group(a: Any, *, by: Index[Any, Any]) -> Any:
    if is_stream(a):
        if a.group is not None:
            raise CompileError("group: the stream is already grouped; flatten it first")
        tagged = MapVertex(a.vertex, _Tag(by), False, Pair[a.row_type, object])  # type: ignore[name-defined]
        return a.builder.add(tagged, group=group_index(by))
    groups: dict[Any, dict[Any, int]] = {}
    for row, c in concrete(a).data.items():
        groups.setdefault(by.f(row), {})[row] = c
    return Grouped({k: ZSetPython.wrap(v) for k, v in groups.items()}, by)


def flatten(g: Any) -> Any:
    if isinstance(g, Stream):
        if g.group is None:
            raise CompileError("flatten: the stream is not grouped")
        return Stream(g.builder, g.vertex, g.row_type, None)
    if isinstance(g, Grouped):
        return ZSetPython.wrap(
            {Pair(row, k): c for k, z in g.groups.items() for row, c in z.data.items()}
        )
    raise TypeError(f"flatten: expected a grouped value, got {type(g).__name__}")


_inside_group: ContextVar[bool] = ContextVar("inside_group", default=False)


def inside_group() -> bool:
    """True while `per_group` runs its sub-query from scratch on one group's Z-set."""
    return _inside_group.get()


class _PerGroup:
    """`st.per_group[grouped](lambda g: ...)`."""

    def __getitem__(self, g: Any) -> Callable[[Callable[[Any], Any]], Any]:
        def run(fn: Callable[[Any], Any]) -> Any:
            if isinstance(g, Stream):
                if g.group is None:
                    raise CompileError("per_group: the stream is not grouped (use st.group)")
                out = fn(g)
                if not isinstance(out, Stream) or out.group is None:
                    raise CompileError("per_group: the function must return a grouped stream")
                return out
            if isinstance(g, Grouped):
                token = _inside_group.set(True)
                try:
                    results = {k: concrete(fn(z)) for k, z in g.groups.items()}
                finally:
                    _inside_group.reset(token)
                return Grouped({k: z for k, z in results.items() if z}, g.by)
            raise TypeError(f"per_group: expected a grouped value, got {type(g).__name__}")

        return run


per_group = _PerGroup()
