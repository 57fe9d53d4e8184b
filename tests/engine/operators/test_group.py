"""group, per_group and flatten: a sub-query run once per group key.

From scratch, `per_group` runs the sub-query on each group's Z-set; incrementally, every
operator inside keeps its state per key. Both must give the same `Pair(row, key)` rows,
and a group with no rows left has no rows in the output (SQL's GROUP BY).
"""

from __future__ import annotations

from typing import Any

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    check_incremental,
    items,
    steps,
    store_property,
)

by_key = st.Index.pick(Item, lambda i: i.key)
by_value = st.Index.pick(Item, lambda i: i.value)


def grouped_then_flattened(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, int]]:
    return st.flatten(st.group(a, by=by_key))


def per_group_map(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.map(g, f=lambda i: i.value % 2)))


def per_group_map_many(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(
        st.per_group[g](lambda g: st.map_many(g, f=lambda i: frozenset(range(i.value))))
    )


def per_group_filter(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.filter(g, f=lambda i: i.value > 1)))


def per_group_reduce(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(
        st.per_group[g](lambda g: st.reduce(g, zero=int, pick_value=lambda i: i.value))
    )


def per_group_count(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.count(g)))


def per_group_filter_then_count(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    """A group whose rows are all filtered out has no count row, as in
    `SELECT key, COUNT(*) FROM items WHERE value > 1 GROUP BY key`."""
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.count(st.filter(g, f=lambda i: i.value > 1))))


def per_group_distinct(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.distinct(st.map(g, f=lambda i: i.value // 2))))


def per_group_first_n(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, int]]:
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.first_n(g, index=by_value, n=2)))


def per_group_self_join(a: st.ZSet[Item]) -> st.ZSet[st.Pair[st.Pair[Item, Item], int]]:
    """Rows of one group paired on value: a join inside the group."""
    g = st.group(a, by=by_key)
    return st.flatten(st.per_group[g](lambda g: st.join(g, g, on_left=by_value, on_right=by_value)))


def by_composite_key(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, tuple[int, int]]]:
    g = st.group(a, by=st.Index.pick(Item, lambda i: (i.value, i.key)))
    return st.flatten(st.per_group[g](lambda g: st.count(g)))


@store_property(run=steps(items))
def test_group_then_flatten_tags_each_row_with_its_key(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, grouped_then_flattened, run)


@store_property(run=steps(items))
def test_map_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_map, run)


@store_property(run=steps(items))
def test_map_many_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_map_many, run)


@store_property(run=steps(items))
def test_filter_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_filter, run)


@store_property(run=steps(items))
def test_reduce_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_reduce, run)


@store_property(run=steps(items))
def test_count_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_count, run)


@store_property(run=steps(items))
def test_count_of_a_filter_per_group_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, per_group_filter_then_count, run)


@store_property(run=steps(items))
def test_distinct_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_distinct, run)


@store_property(run=steps(items))
def test_first_n_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_first_n, run)


@store_property(run=steps(items))
def test_join_per_group_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, per_group_self_join, run)


@store_property(run=steps(items))
def test_count_per_composite_group_key_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, by_composite_key, run)


def test_emptied_group_has_no_count_row(make_store: StoreMaker) -> None:
    row = Item(key=1, value=0)
    graph = st.compile(per_group_count)
    store = make_store(graph)
    (added,) = st.iteration(store, graph, (st.ZSetPython({row: 1}),))
    (removed,) = st.iteration(store, graph, (st.ZSetPython({row: -1}),))
    assert added == st.ZSetPython({st.Pair(1, 1): 1})
    assert removed == st.ZSetPython({st.Pair(1, 1): -1})


def test_filter_that_empties_a_group_gives_it_no_count_row_from_scratch() -> None:
    z = st.ZSetPython({Item(key=0, value=0): 1, Item(key=1, value=2): 1})
    assert per_group_filter_then_count(z) == st.ZSetPython({st.Pair(1, 1): 1})


def per_group_top_two_sum(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    """Stateful operators chained inside a group: SUM of the two lowest values per key."""
    g = st.group(a, by=by_key)
    return st.flatten(
        st.per_group[g](
            lambda g: st.reduce(
                st.first_n(g, index=by_value, n=2), zero=int, pick_value=lambda i: i.value
            )
        )
    )


def per_group_count_distinct(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, int]]:
    """COUNT(DISTINCT value % 2) per key."""
    g = st.group(a, by=by_key)
    return st.flatten(
        st.per_group[g](lambda g: st.count(st.distinct(st.map(g, f=lambda i: i.value % 2))))
    )


def per_composite_group_join(a: st.ZSet[Item]) -> st.ZSet[Any]:
    """Grouped on a composite key, joined inside the group, then counted."""
    g = st.group(a, by=st.Index.pick(Item, lambda i: (i.key, i.value)))
    return st.flatten(
        st.per_group[g](lambda g: st.count(st.join(g, g, on_left=by_key, on_right=by_key)))
    )


@store_property(run=steps(items))
def test_reduce_of_first_n_per_group_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, per_group_top_two_sum, run)


@store_property(run=steps(items))
def test_count_distinct_per_group_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, per_group_count_distinct, run)


@store_property(run=steps(items))
def test_join_per_composite_group_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, per_composite_group_join, run)
