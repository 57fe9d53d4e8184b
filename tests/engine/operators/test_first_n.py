"""first_n: the first n rows of the integral in index order (ORDER BY ... LIMIT n).

A row of weight 3 is three rows; rows of weight <= 0 are skipped; ties are broken by row
identity, the same in every store.
"""

from __future__ import annotations

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

by_value = st.Index.pick(Item, lambda i: i.value)
by_value_desc = st.Index.pick(Item, lambda i: i.value, ascending=False)
by_key_asc_value_desc = st.Index.pick(Item, lambda i: (i.key, i.value), ascending=(True, False))
by_tag_key = st.Index.pick(Tag, lambda t: t.key)


def lowest_two(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.first_n(a, index=by_value, n=2)


def highest_three(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.first_n(a, index=by_value_desc, n=3)


def first_by_mixed_order(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.first_n(a, index=by_key_asc_value_desc, n=3)


def first_tag(a: st.ZSet[Tag]) -> st.ZSet[Tag]:
    """Keys may be None (first when ascending); many ties."""
    return st.first_n(a, index=by_tag_key, n=1)


def top_of_a_map(a: st.ZSet[Item]) -> st.ZSet[Item]:
    """Ties everywhere: many rows share a value after the map."""
    mapped = st.map(a, f=lambda i: Item(key=i.key % 2, value=i.value // 2))
    return st.first_n(mapped, index=by_value, n=2)


@store_property(run=steps(items))
def test_first_n_ascending_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, lowest_two, run)


@store_property(run=steps(items))
def test_first_n_descending_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, highest_three, run)


@store_property(run=steps(items))
def test_first_n_on_a_composite_index_with_mixed_order_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, first_by_mixed_order, run)


@store_property(run=steps(tags))
def test_first_n_with_ties_and_none_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, first_tag, run)


@store_property(run=steps(items))
def test_first_n_of_a_map_with_ties_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, top_of_a_map, run)


class Entry(st.Data):
    """A score in a game and level (either may be None) of a leaderboard."""

    game: int | None
    level: int | None
    points: int | None


entries: hs.SearchStrategy[Entry] = hs.builds(
    Entry,
    game=hs.none() | hs.integers(0, 1),
    level=hs.none() | hs.integers(0, 1),
    points=hs.none() | hs.integers(0, 2),
)
by_points_desc = st.Index.pick(Entry, lambda e: e.points, ascending=False)
by_level_asc_points_desc = st.Index.pick(
    Entry, lambda e: (e.level, e.points), ascending=(True, False)
)


def top_two_per_game(a: st.ZSet[Entry]) -> st.ZSet[st.Pair[Entry, int | None]]:
    """A leaderboard: the first two of each game (None a game too), by level then points
    descending (None first when ascending, last when descending)."""
    g = st.group(a, by=st.Index.pick(Entry, lambda e: e.game))
    return st.flatten(st.per_group[g](lambda g: st.first_n(g, index=by_level_asc_points_desc, n=2)))


def top_two_per_game_and_level(a: st.ZSet[Entry]) -> st.ZSet[st.Pair[Entry, object]]:
    """Grouped on a composite key whose parts may be None, one at a time or both."""
    g = st.group(a, by=st.Index.pick(Entry, lambda e: (e.game, e.level)))
    return st.flatten(st.per_group[g](lambda g: st.first_n(g, index=by_points_desc, n=2)))


@store_property(run=steps(entries))
def test_first_n_per_group_with_none_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, top_two_per_game, run)


@store_property(run=steps(entries))
def test_first_n_per_composite_group_with_none_parts_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, top_two_per_game_and_level, run)


def test_first_n_counts_weight_and_cuts_a_heavy_row_short() -> None:
    low, mid, high = (Item(key=0, value=v) for v in (0, 1, 2))
    z = st.ZSetPython({low: 1, mid: 5, high: 1})
    assert lowest_two(z) == st.ZSetPython({low: 1, mid: 1})
    assert highest_three(z) == st.ZSetPython({high: 1, mid: 2})


def test_first_n_skips_rows_of_negative_weight() -> None:
    low, mid = Item(key=0, value=0), Item(key=0, value=1)
    assert lowest_two(st.ZSetPython({low: -1, mid: 1})) == st.ZSetPython({mid: 1})


def test_first_n_orders_none_first_when_ascending() -> None:
    none, one = Tag(key=None, label="b"), Tag(key=1, label="a")
    assert first_tag(st.ZSetPython({one: 1, none: 1})) == st.ZSetPython({none: 1})


def nothing_first(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.first_n(a, index=by_value, n=0)


def all_first(a: st.ZSet[Item]) -> st.ZSet[Item]:
    """n beyond any integral here: every row of positive weight, with its weight."""
    return st.first_n(a, index=by_value_desc, n=1000)


@store_property(run=steps(items))
def test_first_zero_rows_is_always_empty(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, nothing_first, run)


@store_property(run=steps(items))
def test_first_n_beyond_the_size_keeps_every_positive_row(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, all_first, run)


def test_first_n_beyond_the_size_from_scratch_is_the_positive_part() -> None:
    z = st.ZSetPython({Item(key=0, value=0): 2, Item(key=0, value=1): -1})
    assert all_first(z) == st.ZSetPython({Item(key=0, value=0): 2})
