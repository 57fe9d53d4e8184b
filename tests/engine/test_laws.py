"""Algebraic laws of DBSP, checked on compiled graphs on every store.

Each query returns two streams that the law says are equal; the test runs random changes
(or stream values) through it and compares the two outputs at every iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    Tag,
    items,
    run_stream,
    steps,
    store_property,
    tags,
)

by_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def both_sides_equal(make_store: StoreMaker, law: Callable[..., Any], run: list[Step]) -> None:
    for i, (left, right) in enumerate(run_stream(make_store, law, run)):
        assert left == right, f"step {i}: {left!r} != {right!r}"


def integrate_of_differentiate(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    return st.integrate(st.differentiate(a)), a


def differentiate_of_integrate(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    return st.differentiate(st.integrate(a)), a


def neg_plus_id(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    return st.add(a, st.neg(a)), st.filter(a, f=lambda i: False)


def distinct_twice(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    once = st.distinct(a)
    return st.distinct(once), once


def distinct_of_double(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    return st.distinct(st.add(a, a)), st.distinct(a)


def join_left_linear(
    a: st.ZSet[Item], b: st.ZSet[Item], c: st.ZSet[Tag]
) -> tuple[st.ZSet[Any], st.ZSet[Any]]:
    whole = st.join(st.add(a, b), c, on_left=by_key, on_right=tag_key)
    parts = st.add(
        st.join(a, c, on_left=by_key, on_right=tag_key),
        st.join(b, c, on_left=by_key, on_right=tag_key),
    )
    return whole, parts


def join_right_linear(
    a: st.ZSet[Item], b: st.ZSet[Tag], c: st.ZSet[Tag]
) -> tuple[st.ZSet[Any], st.ZSet[Any]]:
    whole = st.join(a, st.add(b, c), on_left=by_key, on_right=tag_key)
    parts = st.add(
        st.join(a, b, on_left=by_key, on_right=tag_key),
        st.join(a, c, on_left=by_key, on_right=tag_key),
    )
    return whole, parts


def join_of_neg(a: st.ZSet[Item], b: st.ZSet[Tag]) -> tuple[st.ZSet[Any], st.ZSet[Any]]:
    return (
        st.join(st.neg(a), b, on_left=by_key, on_right=tag_key),
        st.neg(st.join(a, b, on_left=by_key, on_right=tag_key)),
    )


def swap(p: st.Pair[Any, Any]) -> st.Pair[Any, Any]:
    return st.Pair(p.right, p.left)


def join_commutes(a: st.ZSet[Item], b: st.ZSet[Tag]) -> tuple[st.ZSet[Any], st.ZSet[Any]]:
    return (
        st.join(a, b, on_left=by_key, on_right=tag_key),
        st.map(st.join(b, a, on_left=tag_key, on_right=by_key), f=swap),
    )


def map_linear(a: st.ZSet[Item], b: st.ZSet[Item]) -> tuple[st.ZSet[int], st.ZSet[int]]:
    return (
        st.map(st.add(a, b), f=lambda i: i.key),
        st.add(st.map(a, f=lambda i: i.key), st.map(b, f=lambda i: i.key)),
    )


def filter_commutes_with_map(a: st.ZSet[Item]) -> tuple[st.ZSet[int], st.ZSet[int]]:
    return (
        st.filter(st.map(a, f=lambda i: i.value), f=lambda v: v > 1),
        st.map(st.filter(a, f=lambda i: i.value > 1), f=lambda i: i.value),
    )


def delay_of_integrate(a: st.ZSet[Item]) -> tuple[st.ZSet[Item], st.ZSet[Item]]:
    return st.delay(st.integrate(a)), st.integrate_delay(a)


def count_is_a_reduce(a: st.ZSet[Item]) -> tuple[st.ZSet[int], st.ZSet[int]]:
    return st.count(a), st.reduce(a, zero=int, pick_value=lambda i: 1)


def group_reduce_is_per_group_reduce(
    a: st.ZSet[Item],
) -> tuple[st.ZSet[st.Pair[int, int]], st.ZSet[st.Pair[int, int]]]:
    g = st.group(a, by=by_key)
    return (
        st.group_reduce_flatten(a, by=by_key, zero=int, pick_value=lambda i: i.value),
        st.flatten(st.per_group[g](lambda g: st.reduce(g, zero=int, pick_value=lambda i: i.value))),
    )


def outer_join_contains_join(a: st.ZSet[Item], b: st.ZSet[Tag]) -> tuple[st.ZSet[Any], ...]:
    """outer_join - join holds only Pair(row, EMPTY) rows, one per unmatched left row."""
    unmatched = st.add(
        st.outer_join(a, b, on_left=by_key, on_right=tag_key),
        st.neg(st.join(a, b, on_left=by_key, on_right=tag_key)),
    )
    return (
        st.filter(unmatched, f=lambda p: p.right != st.EMPTY),
        st.filter(a, f=lambda i: False),
    )


@store_property(values=steps(items))
def test_integrate_of_differentiate_is_identity(make_store: StoreMaker, values: list[Step]) -> None:
    both_sides_equal(make_store, integrate_of_differentiate, values)


@store_property(run=steps(items))
def test_differentiate_of_integrate_is_identity(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, differentiate_of_integrate, run)


@store_property(run=steps(items))
def test_a_stream_plus_its_negation_is_zero(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, neg_plus_id, run)


@store_property(run=steps(items))
def test_distinct_is_idempotent(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, distinct_twice, run)


@store_property(run=steps(items))
def test_distinct_ignores_multiplicity(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, distinct_of_double, run)


@store_property(run=steps(items, items, tags, max_steps=4))
def test_join_is_linear_in_its_left_input(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, join_left_linear, run)


@store_property(run=steps(items, tags, tags, max_steps=4))
def test_join_is_linear_in_its_right_input(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, join_right_linear, run)


@store_property(run=steps(items, tags))
def test_join_of_a_negation_is_the_negated_join(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, join_of_neg, run)


@store_property(run=steps(items, tags))
def test_join_commutes_up_to_swapping_pairs(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, join_commutes, run)


@store_property(run=steps(items, items))
def test_map_is_linear(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, map_linear, run)


@store_property(run=steps(items))
def test_filter_commutes_with_map(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, filter_commutes_with_map, run)


@store_property(run=steps(items))
def test_delay_of_integrate_is_integrate_delay(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, delay_of_integrate, run)


@store_property(run=steps(items))
def test_count_is_a_reduce_of_ones(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, count_is_a_reduce, run)


@store_property(run=steps(items))
def test_group_reduce_flatten_is_reduce_per_group(make_store: StoreMaker, run: list[Step]) -> None:
    both_sides_equal(make_store, group_reduce_is_per_group_reduce, run)


@store_property(run=steps(items, tags))
def test_outer_join_minus_join_is_only_unmatched_rows(
    make_store: StoreMaker, run: list[Step]
) -> None:
    both_sides_equal(make_store, outer_join_contains_join, run)
