"""integrate, integrate_indexed and integrate_delay: running sums of a stream of changes.

Their output is a snapshot, not a change, so the tests compare it with the integral of
the inputs directly (from scratch, the integral of a snapshot is the snapshot).
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
    run_stream,
    steps,
    store_property,
    tags,
)


def integrated(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.integrate(a)


def integrated_map(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.integrate(st.map(a, f=lambda i: i.key + i.value))


def integrated_before(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.integrate_delay(a)


def sums(run: list[Step]) -> list[st.ZSetPython[Any]]:
    out, total = [], st.ZSetPython[Any]()
    for (change,) in run:
        total = total + change
        out.append(total)
    return out


@store_property(run=steps(items))
def test_integrate_outputs_the_sum_of_all_changes_so_far(
    make_store: StoreMaker, run: list[Step]
) -> None:
    outputs = run_stream(make_store, integrated, run)
    assert [out for (out,) in outputs] == sums(run)


@store_property(run=steps(items))
def test_integrate_of_a_map_is_the_map_of_the_integral(
    make_store: StoreMaker, run: list[Step]
) -> None:
    outputs = run_stream(make_store, integrated_map, run)
    assert [out for (out,) in outputs] == [integrated_map(total) for total in sums(run)]


@store_property(run=steps(items))
def test_integrate_delay_outputs_the_sum_before_this_change(
    make_store: StoreMaker, run: list[Step]
) -> None:
    outputs = run_stream(make_store, integrated_before, run)
    assert [out for (out,) in outputs] == [st.ZSetPython(), *sums(run)[:-1]]


def test_integrate_from_scratch_is_the_snapshot() -> None:
    z = st.ZSetPython({Item(key=0, value=0): -2, Item(key=1, value=1): 3})
    assert st.integrate(z) == z
    assert st.integrate_indexed(z, indexes=(by_key,)) == z


by_key = st.Index.pick(Item, lambda i: i.key)
by_tag_desc = st.Index.pick(Tag, lambda t: t.key, ascending=False)
by_key_value_mixed = st.Index.pick(Item, lambda i: (i.key, i.value), ascending=(True, False))

item_cache = st.Cache[Item]()
tag_cache = st.Cache[Tag]()


def cached_items(a: st.ZSet[Item]) -> st.ZSet[Item]:
    _ = item_cache[a](lambda z: st.integrate_indexed(z, indexes=(by_key, by_key_value_mixed)))
    return a


def cached_tags(a: st.ZSet[Tag]) -> st.ZSet[Tag]:
    _ = tag_cache[a](lambda z: st.integrate_indexed(z, indexes=(by_tag_desc,)))
    return a


def identity(z: st.ZSetPython[Any]) -> st.ZSetPython[Any]:
    return z


@store_property(run=steps(items), keys=hs.frozensets(hs.integers(0, 3)))
def test_integrate_indexed_cache_holds_the_integral_in_index_order(
    make_store: StoreMaker, run: list[Step], keys: frozenset[int]
) -> None:
    check_incremental(make_store, cached_items, run, caches=[(item_cache, identity)])
    graph = st.compile(cached_items)
    store = make_store(graph)
    for step in run:
        st.iteration(store, graph, step)
    total = sums(run)[-1]
    held = item_cache.zset(store)
    assert list(held.iter_by_index(by_key)) == list(total.iter_by_index(by_key))
    assert list(held.iter_by_index(by_key, keys)) == list(total.iter_by_index(by_key, keys))
    pairs = {(k, v) for k in keys for v in range(4)}
    assert list(held.iter_by_index(by_key_value_mixed, pairs)) == list(
        total.iter_by_index(by_key_value_mixed, pairs)
    )
    assert list(held.iter_by_index(by_key_value_mixed)) == list(
        total.iter_by_index(by_key_value_mixed)
    )


@store_property(run=steps(tags))
def test_integrate_indexed_descending_index_with_none_keys(
    make_store: StoreMaker, run: list[Step]
) -> None:
    graph = st.compile(cached_tags)
    store = make_store(graph)
    for step in run:
        st.iteration(store, graph, step)
    total = sums(run)[-1]
    held = tag_cache.zset(store)
    assert held == total
    assert list(held.iter_by_index(by_tag_desc)) == list(total.iter_by_index(by_tag_desc))
    some = [None, 1]
    assert list(held.iter_by_index(by_tag_desc, some)) == list(
        total.iter_by_index(by_tag_desc, some)
    )


def test_iter_by_index_orders_keys_descending_with_none_last() -> None:
    rows = [Tag(key=k, label="a") for k in (1, None, 2)]
    z = st.ZSetPython({r: 1 for r in rows})
    assert [k for k, _, _ in z.iter_by_index(by_tag_desc)] == [2, 1, None]
