"""A failed iteration changes nothing: after it, the query goes on as if it never ran.

The query updates join state before a user function fails on a poisoned row, so the
store must roll the join's state back. Checked on every store against from-scratch.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    Tag,
    as_tuple,
    items,
    steps,
    store_property,
    tags,
)

POISON = Item(key=0, value=99)


class Boom(Exception):
    pass


def refuse_poison(i: Item) -> Item:
    if i == POISON:
        raise Boom("poisoned row")
    return i


def joined_then_checked(a: st.ZSet[Item], b: st.ZSet[Tag]) -> tuple[Any, Any, Any]:
    joined = st.join(
        a,
        b,
        on_left=st.Index.pick(Item, lambda i: i.key),
        on_right=st.Index.pick(Tag, lambda t: t.key),
    )
    counts = st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair[Item, Tag], lambda p: p.right.label),
        zero=int,
        pick_value=lambda p: 1,
    )
    checked = st.map(a, f=refuse_poison)
    return (
        st.add(joined, st.neg(st.filter(joined, f=lambda p: False))),
        st.distinct(checked),
        counts,
    )


@store_property(run=steps(items, tags), poisoned=hs.sets(hs.integers(0, 5)))
def test_a_failed_iteration_leaves_no_trace(
    make_store: StoreMaker, run: list[Step], poisoned: set[int]
) -> None:
    graph = st.compile(joined_then_checked)
    store = make_store(graph)
    totals: list[st.ZSetPython[Any]] = [st.ZSetPython(), st.ZSetPython()]
    outputs: list[st.ZSetPython[Any]] | None = None
    for i, (a, b) in enumerate(run):
        if i in poisoned:
            with pytest.raises(Boom):
                st.iteration(store, graph, (a + st.ZSetPython({POISON: 1}), b))
        got = st.iteration(store, graph, (a, b))
        totals = [totals[0] + a, totals[1] + b]
        outputs = list(got) if outputs is None else [o + g for o, g in zip(outputs, got)]
        assert tuple(outputs) == as_tuple(joined_then_checked(*totals)), f"after step {i}"
