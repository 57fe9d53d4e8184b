"""filter: keeps the rows for which the predicate holds, with their weights."""

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


def odd_values(items: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.filter(items, f=lambda i: i.value % 2 == 1)


def nothing(items: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.filter(items, f=lambda i: False)


@store_property(run=steps(items))
def test_filter_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, odd_values, run)


@store_property(run=steps(items))
def test_filter_that_drops_everything_outputs_nothing(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, nothing, run)


def test_filter_from_scratch_keeps_negative_weights() -> None:
    z = st.ZSetPython({Item(key=0, value=1): -2, Item(key=0, value=2): 1})
    assert odd_values(z) == st.ZSetPython({Item(key=0, value=1): -2})
