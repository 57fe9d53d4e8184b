"""identity_print: prints each change as it passes, and passes it on unchanged (debugging)."""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.stores.base import State
from stepping_django.engine.zset import ZSetPython


class IdentityPrintVertex(Vertex):
    kind = "identity_print"

    def __init__(self, a: Vertex) -> None:
        super().__init__((a,), "", a.row_type)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        print(inputs[0])
        return inputs[0]


def identity_print(a: Any) -> Any:
    if is_stream(a):
        return a.builder.add(IdentityPrintVertex(a.vertex), group=a.group)
    z = concrete(a)
    print(z)
    return z
