"""join: pairs of rows whose keys are equal, weights multiplied.

Bilinear, so (DBSP Theorem 5.5), with I the integrals including this iteration's change,
    d(A ⋈ B) = dA ⋈ I(B) + I(A) ⋈ dB - dA ⋈ dB.
State: I(A) indexed by `on_left` and I(B) indexed by `on_right`. Each iteration reads
I(B) only at the keys of dA and I(A) only at the keys of dB: one keyed read per side.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from stepping_django.engine.data import Pair, speedups
from stepping_django.engine.graph import CompileError, Vertex
from stepping_django.engine.index import Index, with_group
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.operators.map import MapVertex
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


def by_key_py(f: Callable[[Any], Any], items: dict[Any, int]) -> dict[Any, list[tuple[Any, int]]]:
    """A change's rows by their key `f(row)`."""
    out: dict[Any, list[tuple[Any, int]]] = {}
    for row, c in items.items():
        k = f(row)
        rows = out.get(k)
        if rows is None:
            out[k] = [(row, c)]
        else:
            rows.append((row, c))
    return out


def join_pairs_py(
    found: dict[Any, dict[Any, int]], keyed: dict[Any, list[tuple[Any, int]]], keyed_left: bool
) -> dict[Any, int]:
    """The pairs of a change's rows (`keyed`, by key) with the stored rows of the other side
    found at their keys; with one side changed, every pair is distinct."""
    if keyed_left:
        return {
            Pair(lrow, rrow): lc * rc
            for k, rrows in found.items()
            for lrow, lc in keyed[k]
            for rrow, rc in rrows.items()
        }
    return {
        Pair(lrow, rrow): lc * rc
        for k, lrows in found.items()
        for rrow, rc in keyed[k]
        for lrow, lc in lrows.items()
    }


#: In C where the C module is built (every row a join changes or outputs passes here).
by_key: Callable[[Callable[[Any], Any], dict[Any, int]], dict[Any, list[tuple[Any, int]]]] = (
    by_key_py if speedups is None else speedups.by_key
)
join_pairs: Callable[
    [dict[Any, dict[Any, int]], dict[Any, list[tuple[Any, int]]], bool], dict[Any, int]
] = join_pairs_py if speedups is None else speedups.join_pairs


def join_change(
    ls: State,
    rs: State,
    dl: ZSetPython[Any],
    dr: ZSetPython[Any],
    on_left: Index[Any, Any],
    on_right: Index[Any, Any],
) -> tuple[dict[Any, int], dict[Any, dict[Any, int]]]:
    """Apply both changes to the states and return the join's change, plus the rows of
    I(A) found at the keys of dB (outer join reuses them)."""
    if dl:
        ls.add(dl)
    if dr:
        rs.add(dr)
    out: dict[Any, int] = {}
    get = out.get
    left_at_r: dict[Any, dict[Any, int]] = {}
    lk = by_key(on_left.f, dl.data) if dl else {}
    rk = by_key(on_right.f, dr.data) if dr else {}
    if lk and not rk:
        # One side changed: every (left, right) pair is distinct, weights non-zero.
        return join_pairs(rs.lookup(on_right, lk.keys()), lk, True), left_at_r
    if rk and not lk:
        left_at_r = ls.lookup(on_left, rk.keys())
        return join_pairs(left_at_r, rk, False), left_at_r
    if lk:
        for k, rrows in rs.lookup(on_right, lk.keys()).items():
            for lrow, lc in lk[k]:
                for rrow, rc in rrows.items():
                    p = Pair(lrow, rrow)
                    out[p] = get(p, 0) + lc * rc
    if rk:
        left_at_r = ls.lookup(on_left, rk.keys())
        for k, lrows in left_at_r.items():
            for rrow, rc in rk[k]:
                for lrow, lc in lrows.items():
                    p = Pair(lrow, rrow)
                    out[p] = get(p, 0) + lc * rc
    if lk and rk:
        for k in lk.keys() & rk.keys():
            for lrow, lc in lk[k]:
                for rrow, rc in rk[k]:
                    p = Pair(lrow, rrow)
                    out[p] = get(p, 0) - lc * rc
    return out, left_at_r


class JoinVertex(Vertex):
    kind = "join"

    def __init__(
        self, l: Vertex, r: Vertex, on_left: Index[Any, Any], on_right: Index[Any, Any]
    ) -> None:
        self.on_left = on_left
        self.on_right = on_right
        super().__init__(
            (l, r),
            f"{on_left.fingerprint()}|{on_right.fingerprint()}",
            Pair[l.row_type, r.row_type],  # type: ignore[name-defined]
        )

    def make_states(self) -> tuple[StateSpec, ...]:
        return (
            self.state_spec("l", indexes=(self.on_left,), row_type=self.inputs[0].row_type),
            self.state_spec("r", indexes=(self.on_right,), row_type=self.inputs[1].row_type),
        )

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        ls, rs = states
        out, _ = join_change(ls, rs, inputs[0], inputs[1], self.on_left, self.on_right)
        if 0 in out.values():
            out = {k: v for k, v in out.items() if v}
        return ZSetPython.wrap(out)


def join_from_scratch(
    l: ZSetPython[Any], r: ZSetPython[Any], on_left: Index[Any, Any], on_right: Index[Any, Any]
) -> ZSetPython[Any]:
    right = by_key_py(on_right.f, r.data)
    out: dict[Any, int] = {}
    for lrow, lc in l.data.items():
        for rrow, rc in right.get(on_left.f(lrow), ()):
            p = Pair(lrow, rrow)
            out[p] = out.get(p, 0) + lc * rc
    return ZSetPython.wrap({k: v for k, v in out.items() if v})


def _regroup(p: Pair[Any, Any]) -> Pair[Any, Any]:
    return Pair(Pair(p.left.left, p.right.left), p.left.right)


def check_key_types(on_left: Index[Any, Any], on_right: Index[Any, Any]) -> None:
    if len(on_left.names) != len(on_right.names):
        raise CompileError(
            f"join: on_left has {len(on_left.names)} key parts ({', '.join(on_left.names)}) "
            f"but on_right has {len(on_right.names)} ({', '.join(on_right.names)})"
        )


def join(l: Any, r: Any, *, on_left: Index[Any, Any], on_right: Index[Any, Any]) -> Any:
    check_key_types(on_left, on_right)
    if not is_stream(l, r):
        return join_from_scratch(concrete(l), concrete(r), on_left, on_right)
    if l.group is None and r.group is None:
        return l.builder.add(JoinVertex(l.vertex, r.vertex, on_left, on_right))
    if l.group is None or r.group is None:
        raise CompileError("join: inside per_group both sides must be grouped")
    joined = JoinVertex(
        l.vertex, r.vertex, with_group(on_left, l.group), with_group(on_right, r.group)
    )
    j = l.builder.add(joined)
    lt, rt = (typing.get_args(s.row_type)[:1] or (object,) for s in (l, r))
    row_type: Any = Pair[Pair[lt[0], rt[0]], object]  # type: ignore[valid-type]
    return l.builder.add(MapVertex(j.vertex, _regroup, False, row_type), group=l.group)
