"""delay (z^-1): the previous iteration's value of a stream. DBSP Definition 2.3.

State: the last value seen. Each iteration outputs it and replaces it with the new value,
writing only the difference (new - old) to the store.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import CompileError, Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.operators.common import is_stream
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


class DelayVertex(Vertex):
    kind = "delay"
    skip_when_empty = False

    def __init__(self, a: Vertex, indexes: tuple[Index[Any, Any], ...]) -> None:
        self.indexes = indexes
        super().__init__((a,), ",".join(ix.fingerprint() for ix in indexes), a.row_type)

    def make_states(self) -> tuple[StateSpec, ...]:
        return (self.state_spec("last", indexes=self.indexes, row_type=self.row_type),)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        (last,) = states
        previous = last.zset()
        change = inputs[0] - previous
        last.add(change)
        return previous


def delay(a: Any) -> Any:
    return delay_indexed(a, indexes=())


def delay_indexed(a: Any, *, indexes: tuple[Index[Any, Any], ...]) -> Any:
    if is_stream(a):
        return a.builder.add(DelayVertex(a.vertex, tuple(indexes)), group=a.group)
    raise CompileError("delay has no from-scratch meaning: use it inside a compiled query")
