"""join: d(A ⋈ B) = dA ⋈ I(B) + I(A) ⋈ dB - dA ⋈ dB, checked against a from-scratch join."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.operators import join
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
    steps,
    store_property,
    tags,
)

item_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def items_with_tags(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[st.Pair[Item, Tag]]:
    return st.join(a, b, on_left=item_key, on_right=tag_key)


def tags_with_tags(a: st.ZSet[Tag], b: st.ZSet[Tag]) -> st.ZSet[st.Pair[Tag, Tag]]:
    """Keys may be None on both sides."""
    return st.join(a, b, on_left=tag_key, on_right=tag_key)


def composite(a: st.ZSet[Item], b: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, Item]]:
    """(key, value) on the left meets (value, key) on the right."""
    return st.join(
        a,
        b,
        on_left=st.Index.pick(Item, lambda i: (i.key, i.value)),
        on_right=st.Index.pick(Item, lambda i: (i.value, i.key)),
    )


def self_join(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, Item]]:
    """Both sides change in every iteration, by the same change."""
    return st.join(a, a, on_left=item_key, on_right=item_key)


def three_way(
    a: st.ZSet[Item], b: st.ZSet[Tag], c: st.ZSet[Item]
) -> st.ZSet[st.Pair[st.Pair[Item, Tag], Item]]:
    ab = st.join(a, b, on_left=item_key, on_right=tag_key)
    return st.join(
        ab,
        c,
        on_left=st.Index.pick(st.Pair[Item, Tag], lambda p: p.left.value),
        on_right=st.Index.pick(Item, lambda i: i.value),
    )


@store_property(run=steps(items, tags))
def test_join_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, items_with_tags, run)


@store_property(run=steps(tags, tags))
def test_join_on_keys_that_may_be_none_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, tags_with_tags, run)


@store_property(run=steps(items, items))
def test_join_on_composite_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, composite, run)


@store_property(run=steps(items))
def test_self_join_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, self_join, run)


@store_property(run=steps(items, tags, items, max_steps=4))
def test_three_way_join_with_all_inputs_changing_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, three_way, run)


def test_join_from_scratch_multiplies_weights() -> None:
    i, t = Item(key=1, value=0), Tag(key=1, label="a")
    got = items_with_tags(st.ZSetPython({i: 2}), st.ZSetPython({t: -3}))
    assert got == st.ZSetPython({st.Pair(i, t): -6})


def test_join_with_keys_of_different_arity_is_refused() -> None:
    with pytest.raises(st.CompileError, match="key parts"):
        st.join(
            st.ZSetPython[Item](),
            st.ZSetPython[Item](),
            on_left=item_key,
            on_right=st.Index.pick(Item, lambda i: (i.key, i.value)),
        )


def by_amount(a: st.ZSet[Priced], b: st.ZSet[Priced]) -> st.ZSet[st.Pair[Priced, Priced]]:
    """Keys equal in Python but written differently (1.0 and 1.00) must meet."""
    return st.join(
        a,
        b,
        on_left=st.Index.pick(Priced, lambda p: p.amount),
        on_right=st.Index.pick(Priced, lambda p: p.amount),
    )


def by_weight(a: st.ZSet[Priced], b: st.ZSet[Priced]) -> st.ZSet[st.Pair[Priced, Priced]]:
    """0.0 and -0.0 are one key."""
    return st.join(
        a,
        b,
        on_left=st.Index.pick(Priced, lambda p: p.weight),
        on_right=st.Index.pick(Priced, lambda p: p.weight),
    )


@store_property(run=steps(priced, priced))
def test_join_on_decimal_keys_of_different_scale_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, by_amount, run)


@store_property(run=steps(priced, priced))
def test_join_on_signed_zero_float_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, by_weight, run)


keyed_rows = hs.dictionaries(
    hs.tuples(hs.integers(0, 3), hs.text(max_size=1)), hs.integers(-2, 2).filter(bool), max_size=8
)


def first_part(row: tuple[int, str]) -> int:
    return row[0]


@given(keyed_rows, keyed_rows, hs.booleans())
def test_a_joins_loops_in_c_give_what_python_gives(
    changed: dict[Any, int], stored: dict[Any, int], changed_left: bool
) -> None:
    """A change's rows by key, and their pairs with the stored rows found at those keys:
    the same dicts, pairs and weights, in the same order, from C and Python."""
    speedups = needs_speedups()
    keyed = speedups.by_key(first_part, changed)
    assert list(keyed.items()) == list(join.by_key_py(first_part, changed).items())
    found: dict[Any, dict[Any, int]] = {}
    for row, c in stored.items():
        if row[0] in keyed:
            found.setdefault(row[0], {})[row] = c
    made = speedups.join_pairs(found, keyed, changed_left)
    assert list(made.items()) == list(join.join_pairs_py(found, keyed, changed_left).items())
