"""group_reduce_flatten: per group key K, `Pair(sum of pick_value(row) * weight, K)`.

SQL's `SELECT SUM(...), k GROUP BY k`: a group exists while its rows' integral is
non-empty, and disappears when its last row is removed.
Incremental rule: the sum is linear, so per touched group
    new_value = old_value + Σ_{x in d, by(x) = K} pick_value(x) * d[x],
and the group's row count changes by the rows whose integral weight crosses zero.
Output: -Pair(old_value, K) if the group existed, +Pair(new_value, K) if it exists now.
State: the integral (read only at the change's rows) and one (K, value, rows) entry per
group (read only at the change's keys), so the cost is the size of the change.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from stepping_django.engine.data import Pair
from stepping_django.engine.graph import Stream, Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.operators.reduce import reduce_from_scratch
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


class GroupReduceVertex(Vertex):
    kind = "group_reduce"

    def __init__(
        self,
        a: Vertex,
        by: Index[Any, Any],
        zero: Callable[[], Any],
        pick_value: Callable[[Any], Any],
        pick_fingerprint: str,
    ) -> None:
        self.by = by
        self.zero = zero
        self.pick_value = pick_value
        self.key_index = Index(
            by.names, by.key_types, by.ascending, operator.itemgetter(0), by.is_composite
        )
        value_type = zero if isinstance(zero, type) else object
        super().__init__(
            (a,),
            f"{by.fingerprint()}|{fingerprint(zero)}|{pick_fingerprint}",
            Pair[value_type, object],  # type: ignore[valid-type]
        )

    def make_states(self) -> tuple[StateSpec, ...]:
        return (
            self.state_spec("rows", row_type=self.inputs[0].row_type),
            self.state_spec("groups", indexes=(self.key_index,)),
        )

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        rows, groups = states
        z = inputs[0]
        change = z.data
        before = rows.weights(change.keys())
        rows.add(z)
        by, pick = self.by.f, self.pick_value
        # Per touched group key: [sum of pick_value * weight, change in its row count].
        acc: dict[Any, list[Any]] = {}
        get = acc.get
        if before:
            weight_before = before.get
            for row, c in change.items():
                k = by(row)
                w = weight_before(row, 0)
                dn = (w + c != 0) - (w != 0)
                e = get(k)
                if e is None:
                    acc[k] = [pick(row) * c, dn]
                else:
                    e[0] = e[0] + pick(row) * c
                    e[1] += dn
        else:  # every row is new: each one adds a row to its group
            for row, c in change.items():
                k = by(row)
                e = get(k)
                if e is None:
                    acc[k] = [pick(row) * c, 1]
                else:
                    e[0] = e[0] + pick(row) * c
                    e[1] += 1
        current = groups.lookup(self.key_index, acc.keys())
        # Keys are distinct, so each (group row, output row) below is set at most once.
        out: dict[Any, int] = {}
        group_change: dict[Any, int] = {}
        zero = self.zero
        for k, (dv, dn) in acc.items():
            b = current.get(k)
            if b:
                old_row = next(iter(b))
                _, old_value, old_n = old_row
                n = old_n + dn
                if n:
                    value = old_value + dv
                    new_row = (k, value, n)
                    if new_row != old_row:
                        group_change[old_row] = -1
                        group_change[new_row] = 1
                    if value != old_value:
                        out[Pair(old_value, k)] = -1
                        out[Pair(value, k)] = 1
                else:
                    group_change[old_row] = -1
                    out[Pair(old_value, k)] = -1
            elif dn:
                value = zero() + dv
                group_change[(k, value, dn)] = 1
                out[Pair(value, k)] = 1
        if group_change:
            groups.add(ZSetPython.wrap(group_change))
        return ZSetPython.wrap(out)


def group_reduce_from_scratch(
    z: ZSetPython[Any],
    by: Index[Any, Any],
    zero: Callable[[], Any],
    pick_value: Callable[[Any], Any],
) -> ZSetPython[Any]:
    groups: dict[Any, dict[Any, int]] = {}
    for row, c in z.data.items():
        groups.setdefault(by.f(row), {})[row] = c
    return ZSetPython.wrap(
        {
            Pair(reduce_from_scratch(ZSetPython.wrap(rows), zero, pick_value), k): 1
            for k, rows in groups.items()
        }
    )


def group_reduce_flatten(
    a: Any, *, by: Index[Any, Any], zero: Callable[[], Any], pick_value: Callable[[Any], Any]
) -> Any:
    if is_stream(a):
        if a.group is not None:
            from stepping_django.engine.graph import CompileError

            raise CompileError("group_reduce_flatten: the stream is already grouped")
        v = GroupReduceVertex(a.vertex, by, zero, pick_value, fingerprint(pick_value))
        return a.builder.add(v)
    return group_reduce_from_scratch(concrete(a), by, zero, pick_value)


class _OnLeft:
    """pick_value lifted to `Pair(row, key)` rows; fingerprinted as the user's function."""

    def __init__(self, f: Callable[[Any], Any]) -> None:
        self.f = f

    def __call__(self, p: Pair[Any, Any]) -> Any:
        return self.f(p.left)


def grouped_reduce(
    a: Stream[Any], zero: Callable[[], Any], pick_value: Callable[[Any], Any]
) -> Any:
    """reduce inside per_group: a group_reduce keyed on the group, staying grouped."""
    assert a.group is not None
    v = GroupReduceVertex(
        a.vertex, a.group, zero, _OnLeft(pick_value), "left:" + fingerprint(pick_value)
    )
    return a.builder.add(v, group=a.group)
