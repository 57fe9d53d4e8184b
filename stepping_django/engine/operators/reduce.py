"""reduce: the sum of `pick_value(row) * weight` over a Z-set, as a one-row Z-set.

Linear in its input (DBSP Section 11.1): the new total is the old total plus the reduce of
the change. The output is the change of `{total: 1}`: `{old: -1, new: +1}`, and on the first
iteration `{zero(): 1}` even for an empty input, so an empty Z-set reduces to `zero()`.
State: the current total (one row). Inside `per_group` this becomes group_reduce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.operators.group import inside_group
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


def reduce_from_scratch(
    z: ZSetPython[Any], zero: Callable[[], Any], pick_value: Callable[[Any], Any]
) -> Any:
    total = zero()
    for row, c in z.data.items():
        total = total + pick_value(row) * c
    return total


class ReduceVertex(Vertex):
    kind = "reduce"
    skip_when_empty = False

    def __init__(
        self, a: Vertex, zero: Callable[[], Any], pick_value: Callable[[Any], Any]
    ) -> None:
        self.zero = zero
        self.pick_value = pick_value
        super().__init__(
            (a,),
            f"{fingerprint(zero)}|{fingerprint(pick_value)}",
            zero if isinstance(zero, type) else object,
        )

    def make_states(self) -> tuple[StateSpec, ...]:
        return (self.state_spec("total"),)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        (state,) = states
        change = inputs[0]
        current = state.zset().data
        if current and not change:
            return ZSetPython()
        old = next(iter(current)) if current else None
        total = old if current else self.zero()
        pick = self.pick_value
        for row, c in change.data.items():
            total = total + pick(row) * c
        if current and total == old:
            return ZSetPython()
        out = {total: 1}
        if current:
            out[old] = -1
        delta = ZSetPython.wrap(out)
        state.add(delta)
        return delta


def reduce(a: Any, *, zero: Callable[[], Any], pick_value: Callable[[Any], Any]) -> Any:
    if is_stream(a):
        if a.group is not None:
            from stepping_django.engine.operators.group_reduce import grouped_reduce

            return grouped_reduce(a, zero, pick_value)
        return a.builder.add(ReduceVertex(a.vertex, zero, pick_value))
    z = concrete(a)
    if not z and inside_group():
        return ZSetPython()  # a group with no rows has no row, as in SQL's GROUP BY
    return ZSetPython.wrap({reduce_from_scratch(z, zero, pick_value): 1})
