"""group_reduce_flatten: Pair(SUM(pick_value), key) per group, as SQL's GROUP BY: a group
exists while it has rows, and its row is retracted when the last one is removed."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.operators import group_reduce
from tests.conftest import needs_speedups
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


values = hs.one_of(
    hs.integers(-(2**70), 2**70), hs.floats(allow_nan=False, allow_infinity=False, width=32)
)
weighted_rows = hs.lists(
    hs.tuples(hs.tuples(hs.integers(0, 6), values), hs.integers(-3, 3).filter(bool)), max_size=12
)


def zset_of(rows: list[tuple[Any, int]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for row, c in rows:
        out[row] = out.get(row, 0) + c
    return {row: c for row, c in out.items() if c}


def key_of(row: tuple[int, Any]) -> int:
    return row[0] % 4


def value_in(row: tuple[int, Any]) -> Any:
    return row[1]


@given(weighted_rows, weighted_rows, hs.booleans(), hs.integers(-(2**70), 2**70))
def test_the_steps_loops_in_c_give_what_the_python_ones_give(
    before: list[tuple[Any, int]], change: list[tuple[Any, int]], undo: bool, weight: int
) -> None:
    """Same groups, same sums, same marks, in the same order, from the same stored groups;
    `undo` takes `before` back out, so groups empty (their marks cancel to 0)."""
    needs_speedups()
    c_accumulate, c_merge = (
        group_reduce.speedups.group_accumulate,
        group_reduce.speedups.group_merge,
    )
    stored, _ = group_reduce.merge_py(
        group_reduce.accumulate_py(zset_of(before), key_of, value_in), {}, int
    )
    current: dict[Any, dict[Any, int]] = {}
    for row in stored:
        current.setdefault(row[0], {})[row] = 1
    items = zset_of(change + ([(r, -c) for r, c in before] if undo else []) + [((9, 1), weight)])
    acc_py = group_reduce.accumulate_py(items, key_of, value_in)
    acc_c = c_accumulate(items, key_of, value_in)
    assert list(acc_c.items()) == list(acc_py.items())
    merged_py = group_reduce.merge_py(acc_py, current, int)
    merged_c = c_merge(acc_c, current, int)
    assert [list(d.items()) for d in merged_c] == [list(d.items()) for d in merged_py]


def test_the_steps_loops_in_c_pass_on_the_users_errors() -> None:
    needs_speedups()

    def bad(row: Any) -> Any:
        raise ValueError(f"no key for {row!r}")

    for accumulate in (group_reduce.accumulate_py, group_reduce.speedups.group_accumulate):
        with pytest.raises(ValueError, match="no key for"):
            accumulate({(1, 2): 1}, bad, value_in)
        with pytest.raises(ValueError, match="no key for"):
            accumulate({(1, 2): 1}, key_of, bad)
