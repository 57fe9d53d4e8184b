"""count: the total weight (COUNT(*)) as a one-row Z-set; 0 for an empty Z-set."""

from __future__ import annotations

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    check_incremental,
    items,
    run_stream,
    steps,
    store_property,
)


def counted(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.count(a)


def counted_distinct_keys(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.count(st.distinct(st.map(a, f=lambda i: i.key)))


@store_property(run=steps(items))
def test_count_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, counted, run)


@store_property(run=steps(items))
def test_count_of_distinct_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, counted_distinct_keys, run)


def test_count_of_nothing_is_zero(make_store: StoreMaker) -> None:
    (out,) = run_stream(make_store, counted, [(st.ZSetPython[Item](),)])
    assert out == (st.ZSetPython({0: 1}),)
    assert counted(st.ZSetPython()) == st.ZSetPython({0: 1})


def test_count_sums_weights() -> None:
    z = st.ZSetPython({Item(key=0, value=0): 3, Item(key=1, value=0): -1})
    assert counted(z) == st.ZSetPython({2: 1})
