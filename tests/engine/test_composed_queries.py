"""Composed queries, with several inputs changing in one iteration, against from-scratch.

Each query chains stateful operators so that one operator's retractions feed the next.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    Tag,
    check_incremental,
    items,
    steps,
    store_property,
    tags,
)
from tests.engine.seed_query import LineItem, Product, ReceiptItem, pick_price, to_receipt_item
from tests.engine.seed_query import cache as receipt_cache
from tests.engine.seed_query import query as seed_query

products = hs.builds(
    Product, name=hs.sampled_from(["tv", "radio"]), price=hs.integers(0, 3).map(float)
)
line_items = hs.builds(
    LineItem,
    basket_id=hs.integers(1, 2),
    product_name=hs.sampled_from(["tv", "radio", "fan"]),
    qty=hs.integers(0, 2),
)


def receipts_from_scratch(
    products: st.ZSetPython[Product], line_items: st.ZSetPython[LineItem]
) -> st.ZSetPython[ReceiptItem]:
    joined = st.join(
        products,
        line_items,
        on_left=st.Index.pick(Product, lambda p: p.name),
        on_right=st.Index.pick(LineItem, lambda l: l.product_name),
    )
    totals = st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair[Product, LineItem], lambda p: p.right.basket_id),
        zero=float,
        pick_value=pick_price,
    )
    return st.map(totals, f=to_receipt_item)


@store_property(run=steps(products, line_items))
def test_seed_query_and_its_receipt_cache_match_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, seed_query, run, caches=[(receipt_cache, receipts_from_scratch)])


by_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def labels_per_key(a: st.ZSet[Item], b: st.ZSet[Tag], c: st.ZSet[Tag]) -> st.ZSet[Any]:
    """COUNT(DISTINCT label) per item key over two tag tables."""
    joined = st.join(a, st.add(b, c), on_left=by_key, on_right=tag_key)
    pairs = st.distinct(st.map(joined, f=lambda p: (p.left.key, p.right.label)))
    return st.group_reduce_flatten(
        pairs,
        by=st.Index.pick(tuple[int, str], lambda t: t[0]),
        zero=int,
        pick_value=lambda t: 1,
    )


def unmatched_per_value(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[Any]:
    """How many items per value have no tag, through an outer join."""
    joined = st.outer_join(a, b, on_left=by_key, on_right=tag_key)
    lonely = st.filter(joined, f=lambda p: p.right == st.EMPTY)
    return st.group_reduce_flatten(
        lonely,
        by=st.Index.pick(st.Pair[Item, st.Empty], lambda p: p.left.value),
        zero=int,
        pick_value=lambda p: 1,
    )


class Total(st.Data):
    key: int
    total: int


def top_two_totals(a: st.ZSet[Item]) -> st.ZSet[Total]:
    """ORDER BY SUM(value) DESC LIMIT 2 over a GROUP BY: first_n on changing totals."""
    totals = st.group_reduce_flatten(a, by=by_key, zero=int, pick_value=lambda i: i.value)
    rows = st.map(totals, f=lambda p: Total(key=p.right, total=p.left))
    return st.first_n(rows, index=st.Index.pick(Total, lambda t: t.total, ascending=False), n=2)


def reachable_items(a: st.ZSet[Item], edges: st.ZSet[st.Pair[int, int]]) -> st.ZSet[Any]:
    """Items joined to every node reachable from their key, then counted."""
    closure = st.transitive_closure(edges)
    joined = st.join(
        a,
        closure,
        on_left=by_key,
        on_right=st.Index.pick(st.Pair[int, int], lambda p: p.left),
    )
    return st.count(st.distinct(st.map(joined, f=lambda p: (p.left.value, p.right.right))))


def union_counted(a: st.ZSet[Item], b: st.ZSet[Item]) -> tuple[st.ZSet[int], st.ZSet[Any]]:
    """Two outputs: a scalar count of a distinct union and the union's first row per key."""
    union = st.distinct(st.add(a, b))
    g = st.group(union, by=by_key)
    firsts = st.flatten(
        st.per_group[g](lambda g: st.first_n(g, index=st.Index.pick(Item, lambda i: i.value), n=1))
    )
    return st.count(union), firsts


@store_property(run=steps(items, tags, tags, max_steps=4))
def test_distinct_count_of_a_join_over_a_union_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, labels_per_key, run)


@store_property(run=steps(items, tags))
def test_group_count_of_outer_join_misses_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, unmatched_per_value, run)


@store_property(run=steps(items))
def test_top_two_group_totals_match_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, top_two_totals, run)


edges = hs.builds(st.Pair, hs.integers(0, 2), hs.integers(0, 2))


@store_property(run=steps(items, edges, max_steps=4))
def test_join_with_a_transitive_closure_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, reachable_items, run)


@store_property(run=steps(items, items))
def test_two_outputs_over_a_distinct_union_match_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, union_counted, run)


Op = tuple[str, int, tuple[Any, ...]]


def ops(*inputs: hs.SearchStrategy[Any]) -> hs.SearchStrategy[list[Op]]:
    """insert / remove of a few rows, or replace of one row, on one input at a time."""
    one = []
    for position, rows in enumerate(inputs):
        some = hs.lists(rows, min_size=1, max_size=3).map(tuple)
        one.append(hs.tuples(hs.sampled_from(["insert", "remove"]), hs.just(position), some))
        one.append(hs.tuples(hs.just("replace"), hs.just(position), hs.tuples(rows, rows)))
    return hs.lists(hs.one_of(one), min_size=1, max_size=8)


@store_property(run=ops(products, line_items))
def test_seed_query_driven_by_actions_matches_from_scratch(
    make_store: StoreMaker, run: list[Op]
) -> None:
    graph = st.compile(seed_query)
    store = make_store(graph)
    actions = st.actions(store, graph)
    totals: list[st.ZSetPython[Any]] = [st.ZSetPython(), st.ZSetPython()]
    joined: st.ZSetPython[Any] = st.ZSetPython()
    for i, (kind, position, rows) in enumerate(run):
        action = actions[position]
        if kind == "insert":
            (out,) = action.insert(*rows)
            change = st.ZSetPython([(row, 1) for row in rows])
        elif kind == "remove":
            (out,) = action.remove(*rows)
            change = st.ZSetPython([(row, -1) for row in rows])
        else:
            old, new = rows
            (out,) = action.replace(old, new)
            change = st.ZSetPython([(old, -1), (new, 1)])
        totals[position] = totals[position] + change
        joined = joined + out
        assert joined == seed_query(*totals), f"after action {i}"
        assert receipt_cache.zset(store) == receipts_from_scratch(*totals), f"after action {i}"
