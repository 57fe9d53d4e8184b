"""map_many: each row to several rows, each carrying the row's weight."""

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


def spread(items: st.ZSet[Item]) -> st.ZSet[int]:
    """0 to 3 outputs per row, overlapping between rows."""
    return st.map_many(items, f=lambda i: frozenset(range(i.key, i.key + i.value)))


@store_property(run=steps(items))
def test_map_many_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, spread, run)


def test_map_many_from_scratch_gives_each_output_the_row_weight() -> None:
    z = st.ZSetPython({Item(key=0, value=2): 3, Item(key=1, value=1): -1})
    assert st.map_many(z, f=lambda i: frozenset(range(i.key, i.key + i.value))) == st.ZSetPython(
        {0: 3, 1: 2}
    )


def test_map_many_to_nothing_gives_the_empty_zset() -> None:
    z = st.ZSetPython({Item(key=0, value=0): 3})
    assert st.map_many(z, f=lambda i: frozenset()) == st.ZSetPython()
