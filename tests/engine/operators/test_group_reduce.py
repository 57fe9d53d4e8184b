"""group_reduce_flatten: Pair(SUM(pick_value), key) per group, as SQL's GROUP BY: a group
exists while it has rows, and its row is retracted when the last one is removed."""

from __future__ import annotations

import decimal

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Priced,
    Step,
    StoreMaker,
    Tag,
    check_incremental,
    items,
    priced,
    run_stream,
    steps,
    store_property,
    tags,
)


def value_of(i: Item) -> int:
    return i.value


def sum_by_key(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    return st.group_reduce_flatten(
        a, by=st.Index.pick(Item, lambda i: i.key), zero=int, pick_value=value_of
    )


def sum_by_composite_key(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, tuple[int, int]]]:
    return st.group_reduce_flatten(
        a, by=st.Index.pick(Item, lambda i: (i.key, i.value)), zero=int, pick_value=lambda i: 1
    )


def sum_of_join_by_label(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[st.Pair[int, str]]:
    """The seed page's shape: a join, then a total per key of the right side."""
    joined = st.join(
        a,
        b,
        on_left=st.Index.pick(Item, lambda i: i.key),
        on_right=st.Index.pick(Tag, lambda t: t.key),
    )
    return st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair[Item, Tag], lambda p: p.right.label),
        zero=int,
        pick_value=lambda p: p.left.value,
    )


@store_property(run=steps(items))
def test_group_reduce_flatten_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, sum_by_key, run)


@store_property(run=steps(items))
def test_group_reduce_flatten_on_a_composite_key_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, sum_by_composite_key, run)


@store_property(run=steps(items, tags))
def test_group_reduce_flatten_of_a_join_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, sum_of_join_by_label, run)


def test_emptied_group_disappears(make_store: StoreMaker) -> None:
    a, b = Item(key=1, value=2), Item(key=1, value=3)
    outputs = run_stream(
        make_store,
        sum_by_key,
        [
            (st.ZSetPython({a: 1, b: 1}),),
            (st.ZSetPython({a: -1}),),
            (st.ZSetPython({b: -1}),),
        ],
    )
    assert [out for (out,) in outputs] == [
        st.ZSetPython({st.Pair(5, 1): 1}),
        st.ZSetPython({st.Pair(5, 1): -1, st.Pair(3, 1): 1}),
        st.ZSetPython({st.Pair(3, 1): -1}),
    ]


def test_group_whose_weights_cancel_but_rows_remain_still_exists(make_store: StoreMaker) -> None:
    """A group holding +a and -b has total weight 0 but is not empty: the group's marks
    (weighted sums of row hashes), not its total weight, say when it is gone."""
    a, b = Item(key=1, value=2), Item(key=1, value=3)
    outputs = run_stream(
        make_store,
        sum_by_key,
        [
            (st.ZSetPython({a: 1, b: -1}),),
            (st.ZSetPython({a: -1}),),
            (st.ZSetPython({b: 1}),),
        ],
    )
    assert [out for (out,) in outputs] == [
        st.ZSetPython({st.Pair(-1, 1): 1}),
        st.ZSetPython({st.Pair(-1, 1): -1, st.Pair(-3, 1): 1}),
        st.ZSetPython({st.Pair(-3, 1): -1}),
    ]


def test_group_whose_sum_is_zero_still_exists() -> None:
    z = st.ZSetPython({Item(key=1, value=0): 1, Item(key=2, value=1): 1})
    assert sum_by_key(z) == st.ZSetPython({st.Pair(0, 1): 1, st.Pair(1, 2): 1})


def count_by_amount(a: st.ZSet[Priced]) -> st.ZSet[st.Pair[int, decimal.Decimal]]:
    """Group keys equal in Python but written differently (1.0, 1.00) are one group."""
    return st.group_reduce_flatten(
        a, by=st.Index.pick(Priced, lambda p: p.amount), zero=int, pick_value=lambda p: 1
    )


def count_by_weight(a: st.ZSet[Priced]) -> st.ZSet[st.Pair[int, float]]:
    return st.group_reduce_flatten(
        a, by=st.Index.pick(Priced, lambda p: p.weight), zero=int, pick_value=lambda p: 1
    )


@store_property(run=steps(priced))
def test_group_keys_equal_but_written_differently_are_one_group(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, count_by_amount, run)
    check_incremental(make_store, count_by_weight, run)
