"""filter: keep the rows for which `f` is true.

Linear: filter(a + b) = filter(a) + filter(b).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


def apply_filter(f: Callable[[Any], bool], z: ZSetPython[Any]) -> ZSetPython[Any]:
    return ZSetPython.wrap({row: c for row, c in z.data.items() if f(row)})


class FilterVertex(Vertex):
    kind = "filter"

    def __init__(self, a: Vertex, f: Callable[[Any], bool], grouped: bool) -> None:
        self.f = f if not grouped else (lambda p: f(p.left))
        super().__init__((a,), f"{fingerprint(f)}|grouped={grouped}", a.row_type)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        return apply_filter(self.f, inputs[0])


def filter(a: Any, *, f: Callable[[Any], bool]) -> Any:
    if is_stream(a):
        return a.builder.add(FilterVertex(a.vertex, f, a.group is not None), a.row_type, a.group)
    return apply_filter(f, concrete(a))
