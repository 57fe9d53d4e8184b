"""integrate (I): the running sum of a stream of changes. DBSP Definition 2.16.

I(a)[t] = a[0] + ... + a[t]. State: the sum so far. Each iteration adds the change (a write
of the change's size) and outputs a view of the state, read only if something consumes it.
From scratch, the integral of a snapshot is the snapshot itself.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.stores.base import State, StateSpec, StateView
from stepping_django.engine.zset import ZSetPython


class IntegrateVertex(Vertex):
    kind = "integrate"
    skip_when_empty = False
    lazy_output = True

    def __init__(self, a: Vertex, indexes: tuple[Index[Any, Any], ...]) -> None:
        self.indexes = indexes
        super().__init__((a,), ",".join(ix.fingerprint() for ix in indexes), a.row_type)

    def make_states(self) -> tuple[StateSpec, ...]:
        return (self.state_spec("sum", indexes=self.indexes, row_type=self.row_type),)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> Any:
        (total,) = states
        total.add(inputs[0])
        return StateView(total)


class IntegrateDelayVertex(IntegrateVertex):
    """The integral up to the previous iteration: I(a) - a."""

    kind = "integrate_delay"
    lazy_output = False

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        (total,) = states
        before = total.zset()
        total.add(inputs[0])
        return before


def integrate(a: Any) -> Any:
    return integrate_indexed(a, indexes=())


def integrate_indexed(a: Any, *, indexes: tuple[Index[Any, Any], ...]) -> Any:
    if is_stream(a):
        return a.builder.add(IntegrateVertex(a.vertex, tuple(indexes)), group=a.group)
    return ZSetPython.wrap(dict(concrete(a).data))


def integrate_delay(a: Any) -> Any:
    if is_stream(a):
        return a.builder.add(IntegrateDelayVertex(a.vertex, ()), group=a.group)
    return ZSetPython()
