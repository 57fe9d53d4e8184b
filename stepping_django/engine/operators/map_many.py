"""map_many: each row to any number of rows (`f` returns an iterable, e.g. a frozenset).

Linear: map_many(a + b) = map_many(a) + map_many(b); each output row carries its input
row's weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stepping_django.engine.data import Pair
from stepping_django.engine.graph import Vertex
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import accumulate, concrete, is_stream
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


def apply_map_many(f: Callable[[Any], Iterable[Any]], z: ZSetPython[Any]) -> ZSetPython[Any]:
    return accumulate((out, c) for row, c in z.data.items() for out in f(row))


class MapManyVertex(Vertex):
    kind = "map_many"

    def __init__(self, a: Vertex, f: Callable[[Any], Iterable[Any]], grouped: bool) -> None:
        self.f = f if not grouped else (lambda p: [Pair(x, p.right) for x in f(p.left)])
        super().__init__((a,), f"{fingerprint(f)}|grouped={grouped}")

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        return apply_map_many(self.f, inputs[0])


def map_many(a: Any, *, f: Callable[[Any], Iterable[Any]]) -> Any:
    if is_stream(a):
        return a.builder.add(MapManyVertex(a.vertex, f, a.group is not None), group=a.group)
    return apply_map_many(f, concrete(a))
