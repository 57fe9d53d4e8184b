"""map: the integral of its changes is the map of the integral, on every store."""

from __future__ import annotations

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


def to_key(items: st.ZSet[Item]) -> st.ZSet[int]:
    """Many rows onto one: weights of colliding rows add up, and may cancel."""
    return st.map(items, f=lambda i: i.key)


def to_row(items: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.map(items, f=lambda i: Item(key=i.value, value=i.key))


def chained(items: st.ZSet[Item]) -> st.ZSet[int]:
    swapped = st.map(items, f=lambda i: Item(key=i.value % 2, value=i.key))
    return st.map(swapped, f=lambda i: i.key * 10 + i.value)


@store_property(run=steps(items))
def test_map_to_colliding_keys_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, to_key, run)


@store_property(run=steps(items))
def test_map_to_rows_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, to_row, run)


@store_property(run=steps(items))
def test_chained_maps_match_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, chained, run)


def test_map_from_scratch_adds_the_weights_of_rows_that_map_together() -> None:
    z = st.ZSetPython({Item(key=1, value=0): 2, Item(key=1, value=1): -2, Item(key=2, value=0): 3})
    assert st.map(z, f=lambda i: i.key) == st.ZSetPython({2: 3})
