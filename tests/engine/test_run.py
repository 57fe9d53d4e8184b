"""Running graphs: actions (one per input), batched, and what an iteration returns."""

from __future__ import annotations

from typing import Any

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import Item, StoreMaker, Tag

by_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def joined(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[Any]:
    return st.join(a, b, on_left=by_key, on_right=tag_key)


def test_actions_give_one_action_per_input_and_return_the_output_change(
    make_store: StoreMaker,
) -> None:
    graph = st.compile(joined)
    store = make_store(graph)
    items, tags = st.actions(store, graph)
    row, tag, other = Item(key=1, value=0), Tag(key=1, label="a"), Tag(key=1, label="b")
    assert items.insert(row, row) == (st.ZSetPython(),)
    assert tags.insert(tag) == (st.ZSetPython({st.Pair(row, tag): 2}),)
    assert tags.replace(tag, other) == (
        st.ZSetPython({st.Pair(row, tag): -2, st.Pair(row, other): 2}),
    )
    assert items.remove(row) == (st.ZSetPython({st.Pair(row, other): -1}),)


def test_replacing_a_row_by_itself_changes_nothing(make_store: StoreMaker) -> None:
    graph = st.compile(joined)
    store = make_store(graph)
    items, tags = st.actions(store, graph)
    tags.insert(Tag(key=1, label="a"))
    items.insert(Item(key=1, value=0))
    assert items.replace(Item(key=1, value=0), Item(key=1, value=0)) == (st.ZSetPython(),)


def test_batched_splits_in_order_into_lists_of_at_most_n() -> None:
    assert list(st.batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(st.batched([], 3)) == []
    with pytest.raises(ValueError):
        list(st.batched([1], 0))


def test_iteration_accepts_a_cache_view_as_an_input(make_store: StoreMaker) -> None:
    cache = st.Cache[Item]()

    def keep(a: st.ZSet[Item]) -> st.ZSet[Item]:
        _ = cache[a](lambda z: st.integrate(z))
        return a

    graph = st.compile(keep)
    store = make_store(graph)
    st.iteration(store, graph, (st.ZSetPython({Item(key=1, value=1): 3}),))
    (out,) = st.iteration(store, graph, (cache.zset(store),))
    assert out == st.ZSetPython({Item(key=1, value=1): 3})
    assert cache.zset(store) == st.ZSetPython({Item(key=1, value=1): 6})


def test_a_store_is_freed_after_its_iterations() -> None:
    """The graph outlives many stores (one per apply batch); it must not keep them alive."""
    import gc
    import sqlite3
    import weakref

    from tests.engine.seed_query import LineItem, Product, graph

    conn = sqlite3.connect(":memory:")
    store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
    products, items = st.actions(store, graph)
    products.insert(Product(name="tv", price=3))
    items.insert(LineItem(basket_id=1, product_name="tv", qty=2))
    ref = weakref.ref(store)
    del store, products, items
    gc.collect()
    assert ref() is None
