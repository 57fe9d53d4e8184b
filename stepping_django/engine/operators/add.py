"""add: the union of Z-sets, weights summed.

Linear in each input: the change of a + b is the change of a plus the change of b.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.operators.common import concrete, is_stream, same_group
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


class AddVertex(Vertex):
    kind = "add"

    def __init__(self, *inputs: Vertex) -> None:
        super().__init__(tuple(inputs), str(len(inputs)), inputs[0].row_type)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        out = inputs[0]
        for z in inputs[1:]:
            out = out + z
        return out


def add(a: Any, b: Any) -> Any:
    if is_stream(a, b):
        g = same_group(a, b)
        return a.builder.add(AddVertex(a.vertex, b.vertex), group=g)
    return concrete(a) + concrete(b)


def add3(a: Any, b: Any, c: Any) -> Any:
    if is_stream(a, b, c):
        g = same_group(a, b, c)
        return a.builder.add(AddVertex(a.vertex, b.vertex, c.vertex), group=g)
    return concrete(a) + concrete(b) + concrete(c)
