"""distinct: each row with positive weight once (weight 1); others dropped.

Incremental rule (DBSP Proposition 6.3, the `H` function): for each row x in the change
d, with w the weight of x in the integral so far,
    out[x] = [w + d[x] > 0] - [w > 0].
State: the integral, read only at the rows of the change.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


def haitch(before: ZSetPython[Any], change: ZSetPython[Any]) -> ZSetPython[Any]:
    """How distinct changes when `change` is added to `before`."""
    out = {}
    for row, c in change.data.items():
        w = before.get_count(row)
        delta = (w + c > 0) - (w > 0)
        if delta:
            out[row] = delta
    return ZSetPython.wrap(out)


class DistinctVertex(Vertex):
    kind = "distinct"

    def __init__(self, a: Vertex) -> None:
        super().__init__((a,), "", a.row_type)

    def make_states(self) -> tuple[StateSpec, ...]:
        return (self.state_spec("sum", row_type=self.row_type),)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        (total,) = states
        change = inputs[0]
        before = total.weights(change.data.keys())
        total.add(change)
        out = {}
        for row, c in change.data.items():
            w = before.get(row, 0)
            delta = (w + c > 0) - (w > 0)
            if delta:
                out[row] = delta
        return ZSetPython.wrap(out)


def distinct(a: Any) -> Any:
    if is_stream(a):
        return a.builder.add(DistinctVertex(a.vertex), group=a.group)
    return ZSetPython.wrap({row: 1 for row, c in concrete(a).data.items() if c > 0})
