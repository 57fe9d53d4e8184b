"""outer_join: a left join; left rows without a match pair with `EMPTY`.

For each left row x with key k: Pair(x, y) for each right row y at k (as join), or
Pair(x, EMPTY) with x's weight when no right row at k has a non-zero weight.
Incremental rule: the inner part is join's rule. The EMPTY part changes only at keys
touched by the change: where k's matched status is unchanged, the EMPTY rows follow dA
(if k is unmatched); where it flips, all of I(A) at k moves in or out.
State: I(A) by `on_left`, I(B) by `on_right`, and per key the number of distinct right
rows with non-zero weight (so "is k matched" is one keyed read, not a scan of I(B)).
"""

from __future__ import annotations

import operator
from typing import Any

from stepping_django.engine.data import EMPTY, Empty, Pair
from stepping_django.engine.graph import CompileError, Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.operators.common import add_into, concrete, is_stream
from stepping_django.engine.operators.join import (
    by_key,
    check_key_types,
    join_change,
    join_from_scratch,
)
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


class OuterJoinVertex(Vertex):
    kind = "outer_join"

    def __init__(
        self, l: Vertex, r: Vertex, on_left: Index[Any, Any], on_right: Index[Any, Any]
    ) -> None:
        self.on_left = on_left
        self.on_right = on_right
        self.key_index = Index(
            on_right.names,
            on_right.key_types,
            on_right.ascending,
            operator.itemgetter(0),
            on_right.is_composite,
        )
        super().__init__(
            (l, r),
            f"{on_left.fingerprint()}|{on_right.fingerprint()}",
            Pair[l.row_type, r.row_type | Empty],  # type: ignore[name-defined]
        )

    def make_states(self) -> tuple[StateSpec, ...]:
        return (
            self.state_spec("l", indexes=(self.on_left,), row_type=self.inputs[0].row_type),
            self.state_spec("r", indexes=(self.on_right,), row_type=self.inputs[1].row_type),
            self.state_spec("keys", indexes=(self.key_index,)),
        )

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        ls, rs, keys = states
        dl, dr = inputs
        rbefore = rs.weights(dr.data.keys()) if dr else {}
        out, left_at_r = join_change(ls, rs, dl, dr, self.on_left, self.on_right)
        fl, fr = self.on_left.f, self.on_right.f
        dn: dict[Any, int] = {}
        for row, c in dr.data.items():
            w = rbefore.get(row, 0)
            flip = (w + c != 0) - (w != 0)
            if flip:
                k = fr(row)
                dn[k] = dn.get(k, 0) + flip
        lk = by_key(fl, dl.data) if dl else {}
        touched = lk.keys() | dn.keys()
        current = keys.lookup(self.key_index, touched) if touched else {}
        key_change: dict[Any, int] = {}
        for k in touched:
            old_row = next(iter(current[k])) if k in current else None
            old_n = old_row[1] if old_row is not None else 0
            new_n = old_n + dn.get(k, 0)
            if new_n != old_n:
                if old_row is not None:
                    key_change[old_row] = -1
                if new_n:
                    key_change[(k, new_n)] = 1
            if (old_n > 0) == (new_n > 0):
                if new_n == 0:
                    for row, c in lk.get(k, ()):
                        add_into(out, Pair(row, EMPTY), c)
                continue
            sign = 1 if new_n == 0 else -1
            now = left_at_r.get(k, {})
            rows = dict(now)
            if sign < 0:
                for row, c in lk.get(k, ()):
                    rows[row] = rows.get(row, 0) - c
            for row, c in rows.items():
                if c:
                    add_into(out, Pair(row, EMPTY), sign * c)
        if key_change:
            keys.add(ZSetPython.wrap(key_change))
        return ZSetPython.wrap({k: v for k, v in out.items() if v})


def outer_join(l: Any, r: Any, *, on_left: Index[Any, Any], on_right: Index[Any, Any]) -> Any:
    check_key_types(on_left, on_right)
    if not is_stream(l, r):
        lz, rz = concrete(l), concrete(r)
        inner = join_from_scratch(lz, rz, on_left, on_right)
        matched = {on_right.f(row) for row in rz.data}
        empty = {Pair(row, EMPTY): c for row, c in lz.data.items() if on_left.f(row) not in matched}
        return inner + ZSetPython.wrap(empty)
    if l.group is not None or r.group is not None:
        raise CompileError("outer_join is not supported inside per_group; join on the group key")
    return l.builder.add(OuterJoinVertex(l.vertex, r.vertex, on_left, on_right))
