"""outer_join: the inner join plus Pair(left, EMPTY) for left rows whose key has no match."""

from __future__ import annotations

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

item_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def left_join(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[st.Pair[Item, Tag | st.Empty]]:
    return st.outer_join(a, b, on_left=item_key, on_right=tag_key)


def left_join_tags(a: st.ZSet[Tag], b: st.ZSet[Tag]) -> st.ZSet[st.Pair[Tag, Tag | st.Empty]]:
    return st.outer_join(a, b, on_left=tag_key, on_right=tag_key)


def left_join_composite(
    a: st.ZSet[Item], b: st.ZSet[Item]
) -> st.ZSet[st.Pair[Item, Item | st.Empty]]:
    return st.outer_join(
        a,
        b,
        on_left=st.Index.pick(Item, lambda i: (i.key, i.value)),
        on_right=st.Index.pick(Item, lambda i: (i.value, i.key)),
    )


def self_left_join(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, Item | st.Empty]]:
    return st.outer_join(a, a, on_left=item_key, on_right=st.Index.pick(Item, lambda i: i.value))


@store_property(run=steps(items, tags))
def test_outer_join_with_matches_appearing_and_disappearing_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, left_join, run)


@store_property(run=steps(tags, tags))
def test_outer_join_on_keys_that_may_be_none_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, left_join_tags, run)


@store_property(run=steps(items, items))
def test_outer_join_on_composite_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, left_join_composite, run)


@store_property(run=steps(items))
def test_outer_join_of_a_stream_with_itself_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, self_left_join, run)


def test_outer_join_pairs_unmatched_rows_with_empty_and_matched_rows_with_every_match() -> None:
    lonely, matched = Item(key=0, value=0), Item(key=1, value=0)
    a, b = Tag(key=1, label="a"), Tag(key=1, label="b")
    got = left_join(st.ZSetPython({lonely: 2, matched: 1}), st.ZSetPython({a: 1, b: 1}))
    assert got == st.ZSetPython(
        {st.Pair(lonely, st.EMPTY): 2, st.Pair(matched, a): 1, st.Pair(matched, b): 1}
    )


def test_a_right_row_with_negative_weight_still_counts_as_a_match() -> None:
    row, tag = Item(key=1, value=0), Tag(key=1, label="a")
    got = left_join(st.ZSetPython({row: 1}), st.ZSetPython({tag: -1}))
    assert got == st.ZSetPython({st.Pair(row, tag): -1})
