"""first_n: the first n rows of the integral in index order (ORDER BY ... LIMIT n).

Counting weight (a row of weight 3 is three rows; rows with weight <= 0 are skipped),
ties broken by row identity so every store agrees. Not linear (DBSP Section 11.1: deletions
need the full set), so the incremental rule keeps the integral ordered by the index and
the previous top n:
    out = top_n(I(a)) - top_n(I(a) - da),
where the new top n is read from the ordered integral (n rows, not the whole table) and
the old one is the stored previous output. Inside per_group, the same per touched group.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.graph import Vertex
from stepping_django.engine.index import Index, lift_left
from stepping_django.engine.operators.common import add_into, concrete, is_stream
from stepping_django.engine.serialize import identity
from stepping_django.engine.stores.base import Ordered, State, StateSpec, take_first
from stepping_django.engine.zset import ZSetPython


class FirstNVertex(Vertex):
    kind = "first_n"

    def __init__(
        self, a: Vertex, index: Index[Any, Any], n: int, group: Index[Any, Any] | None
    ) -> None:
        self.n = n
        self.group = group
        self.ordered = Ordered(lift_left(index) if group is not None else index, group)
        super().__init__(
            (a,),
            f"{index.fingerprint()}|{n}|{group.fingerprint() if group else ''}",
            a.row_type,
        )

    def make_states(self) -> tuple[StateSpec, ...]:
        return (
            self.state_spec("rows", ordered=(self.ordered,), row_type=self.row_type),
            self.state_spec(
                "top",
                indexes=(self.group,) if self.group is not None else (),
                row_type=self.row_type,
            ),
        )

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        rows, top = states
        change = inputs[0]
        rows.add(change)
        if self.group is None:
            new = rows.first(self.ordered, self.n).get(None, [])
            old = top.zset().data
        else:
            gf = self.group.f
            touched = {gf(row) for row in change.data}
            firsts = rows.first(self.ordered, self.n, touched)
            new = [rc for g in touched for rc in firsts.get(g, ())]
            old = {row: c for b in top.lookup(self.group, touched).values() for row, c in b.items()}
        out = dict(old)
        for row in out:
            out[row] = -out[row]
        for row, c in new:
            add_into(out, row, c)
        delta = ZSetPython.wrap(out)
        top.add(delta)
        return delta


def first_n_from_scratch(z: ZSetPython[Any], index: Index[Any, Any], n: int) -> ZSetPython[Any]:
    f, sort_key = index.f, index.sort_key
    ordered = sorted(z.data.items(), key=lambda rc: (sort_key(f(rc[0])), identity(rc[0])))
    return ZSetPython.wrap(dict(take_first(iter(ordered), n)))


def first_n(a: Any, *, index: Index[Any, Any], n: int) -> Any:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"first_n: n must be an int >= 0, not {n!r}")
    if is_stream(a):
        return a.builder.add(FirstNVertex(a.vertex, index, n, a.group), group=a.group)
    return first_n_from_scratch(concrete(a), index, n)
