"""group_reduce_flatten: per group key K, `Pair(sum of pick_value(row) * weight, K)`.

SQL's `SELECT SUM(...), k GROUP BY k`: a group exists while its rows' integral is
non-empty, and disappears when its last row is removed.
Incremental rule: the sum is linear, so per touched group
    new_value = old_value + Σ_{x in d, by(x) = K} pick_value(x) * d[x],
and so is the group's *mark*: two sums Σ_x weight(x) * h_i(x) mod P, with h_1, h_2
independent 61-bit hashes of the row's identity and P = 2**61 - 1 prime. The mark is
(0, 0) when the group is empty; when it is not, it is (0, 0) only with probability 1/P**2
for any non-zero weights (a hash collision, as for 128-bit identities), so it tells an
emptied group apart without storing the group's rows.
Output: -Pair(old_value, K) if the group existed, +Pair(new_value, K) if it exists now.
State: one (K, value, mark_1, mark_2) entry per group, read only at the change's keys, so
the cost is the size of the change and the state is the size of the output.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from typing import Any

from stepping_django.engine.data import Pair, speedups
from stepping_django.engine.graph import Stream, Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.naming import fingerprint
from stepping_django.engine.operators.common import concrete, is_stream
from stepping_django.engine.operators.reduce import reduce_from_scratch
from stepping_django.engine.serialize import IDENTITY_BYTES, identity
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython

#: The marks' modulus: a Mersenne prime, so any weight vector that is not all 0 (|w| < P)
#: gives a mark of 0 with probability exactly 1/P; it keeps marks in a 64-bit integer.
MARK_MODULUS = 2**61 - 1


def row_hashes_py(row: Any) -> tuple[int, int]:
    """Two stable, uniformly spread hashes of a row, from the two halves of its identity
    when that is a digest, else of a digest of it (short identities are not spread)."""
    i = identity(row)
    if len(i) < IDENTITY_BYTES:
        i = hashlib.blake2b(i, digest_size=IDENTITY_BYTES).digest()
    return int.from_bytes(i[:8], "big") % MARK_MODULUS, int.from_bytes(i[8:], "big") % MARK_MODULUS


#: The same, in C where the C module is built (a Python frame and two int conversions less
#: for every row of a change).
row_hashes: Callable[[Any], tuple[int, int]] = (
    row_hashes_py if speedups is None else speedups.row_hashes
)


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
        return (self.state_spec("groups", indexes=(self.key_index,)),)

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        (groups,) = states
        acc = accumulate(inputs[0].data, self.by.f, self.pick_value)
        current = groups.lookup(self.key_index, acc.keys())
        group_change, out = merge(acc, current, self.zero)
        if group_change:
            groups.add(ZSetPython.wrap(group_change))
        return ZSetPython.wrap(out)


def accumulate_py(
    items: dict[Any, int], by: Callable[[Any], Any], pick: Callable[[Any], Any]
) -> dict[Any, list[Any]]:
    """Per touched group key: [Σ pick_value(row) * weight, the two marks' changes mod P]."""
    acc: dict[Any, list[Any]] = {}
    get = acc.get
    p = MARK_MODULUS
    for row, c in items.items():
        k = by(row)
        h1, h2 = row_hashes(row)
        e = get(k)
        if e is None:
            acc[k] = [pick(row) * c, h1 * c % p, h2 * c % p]
        else:
            e[0] = e[0] + pick(row) * c
            e[1] = (e[1] + h1 * c) % p
            e[2] = (e[2] + h2 * c) % p
    return acc


def merge_py(
    acc: dict[Any, list[Any]], current: dict[Any, dict[Any, int]], zero: Callable[[], Any]
) -> tuple[dict[Any, int], dict[Any, int]]:
    """The touched groups' state changes and output changes, from their stored rows."""
    # Keys are distinct, so each (group row, output row) below is set at most once.
    out: dict[Any, int] = {}
    group_change: dict[Any, int] = {}
    p = MARK_MODULUS
    for k, (dv, dm1, dm2) in acc.items():
        b = current.get(k)
        if b:
            old_row = next(iter(b))
            _, old_value, old_m1, old_m2 = old_row
            m1, m2 = (old_m1 + dm1) % p, (old_m2 + dm2) % p
            if m1 or m2:
                value = old_value + dv
                new_row = (k, value, m1, m2)
                if new_row != old_row:
                    group_change[old_row] = -1
                    group_change[new_row] = 1
                if value != old_value:
                    out[Pair(old_value, k)] = -1
                    out[Pair(value, k)] = 1
            else:
                group_change[old_row] = -1
                out[Pair(old_value, k)] = -1
        elif dm1 or dm2:
            value = zero() + dv
            group_change[(k, value, dm1, dm2)] = 1
            out[Pair(value, k)] = 1
    return group_change, out


#: The step's two loops in C where the C module is built (a Python frame less per row and
#: per group); the Python functions are the reference.
accumulate: Callable[..., dict[Any, list[Any]]] = (
    accumulate_py if speedups is None else speedups.group_accumulate
)
merge: Callable[..., tuple[dict[Any, int], dict[Any, int]]] = (
    merge_py if speedups is None else speedups.group_merge
)


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
