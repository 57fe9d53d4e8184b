"""map: Z-set -> Z-set, each row through `f`.

Linear: map(a + b) = map(a) + map(b), so the change of the output is map of the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepping_django.engine.data import Pair
from stepping_django.engine.graph import Vertex
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import concrete, is_stream, return_type
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


def apply_map(f: Callable[[Any], Any], z: ZSetPython[Any]) -> ZSetPython[Any]:
    data = z.data
    # Usually no two rows map to one: build the dict in C, one hash per row.
    mapped = dict(zip([f(row) for row in data], data.values()))
    if len(mapped) == len(data):
        return ZSetPython.wrap(mapped)
    out: dict[Any, int] = {}
    get = out.get
    for row, c in data.items():
        r = f(row)
        out[r] = get(r, 0) + c
    if len(out) == len(data):
        return ZSetPython.wrap(out)
    return ZSetPython.wrap({k: v for k, v in out.items() if v})


class MapVertex(Vertex):
    kind = "map"

    def __init__(self, a: Vertex, f: Callable[[Any], Any], grouped: bool, row_type: Any) -> None:
        self.f = f if not grouped else (lambda p: Pair(f(p.left), p.right))
        super().__init__((a,), f"{fingerprint(f)}|grouped={grouped}", row_type)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        return apply_map(self.f, inputs[0])


def map(a: Any, *, f: Callable[[Any], Any]) -> Any:
    if is_stream(a):
        t = return_type(f)
        v = MapVertex(a.vertex, f, a.group is not None, t)
        return a.builder.add(v, group=a.group)
    return apply_map(f, concrete(a))
