"""neg: every weight negated.

Linear: neg(a + b) = neg(a) + neg(b).
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


class NegVertex(Vertex):
    kind = "neg"

    def __init__(self, a: Vertex) -> None:
        super().__init__((a,), "", a.row_type)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        return -inputs[0]


def neg(a: Any) -> Any:
    if is_stream(a):
        return a.builder.add(NegVertex(a.vertex), group=a.group)
    return -concrete(a)
