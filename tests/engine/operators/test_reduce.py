"""reduce: one row, the sum of pick_value(row) * weight; an empty Z-set reduces to zero()."""

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


def total_value(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.reduce(a, zero=int, pick_value=lambda i: i.value)


def total_after_filter(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.reduce(st.filter(a, f=lambda i: i.key == 0), zero=int, pick_value=lambda i: i.value)


def zero_one() -> int:
    return 1


def total_from_one(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.reduce(a, zero=zero_one, pick_value=lambda i: i.key)


@store_property(run=steps(items))
def test_reduce_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, total_value, run)


@store_property(run=steps(items))
def test_reduce_of_a_filter_that_is_often_empty_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, total_after_filter, run)


@store_property(run=steps(items))
def test_reduce_with_a_custom_zero_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, total_from_one, run)


def test_reduce_of_nothing_outputs_zero_on_the_first_iteration(make_store: StoreMaker) -> None:
    empty = (st.ZSetPython[Item](),)
    outputs = run_stream(make_store, total_value, [empty, empty])
    assert outputs == [(st.ZSetPython({0: 1}),), (st.ZSetPython(),)]


def test_reduce_outputs_the_old_total_retracted_and_the_new_one_inserted(
    make_store: StoreMaker,
) -> None:
    row = Item(key=0, value=3)
    outputs = run_stream(
        make_store, total_value, [(st.ZSetPython({row: 1}),), (st.ZSetPython({row: 1}),)]
    )
    assert outputs == [(st.ZSetPython({3: 1}),), (st.ZSetPython({3: -1, 6: 1}),)]


def test_reduce_from_scratch_of_an_empty_zset_is_zero() -> None:
    assert total_value(st.ZSetPython()) == st.ZSetPython({0: 1})
    assert total_from_one(st.ZSetPython()) == st.ZSetPython({1: 1})
