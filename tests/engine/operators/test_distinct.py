"""distinct: every row of positive weight, once. Incremental rule: DBSP's H function."""

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


def distinct_items(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.distinct(a)


def distinct_keys(a: st.ZSet[Item]) -> st.ZSet[int]:
    return st.distinct(st.map(a, f=lambda i: i.key))


@store_property(run=steps(items))
def test_distinct_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, distinct_items, run)


@store_property(run=steps(items))
def test_distinct_of_colliding_rows_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, distinct_keys, run)


def test_distinct_from_scratch_keeps_positive_rows_once() -> None:
    z = st.ZSetPython({1: 3, 2: -1, 3: 1})
    assert st.distinct(z) == st.ZSetPython({1: 1, 3: 1})


def test_haitch_is_the_change_of_distinct() -> None:
    before = st.ZSetPython({1: 2, 2: 1, 3: -1})
    change = st.ZSetPython({1: -2, 2: 1, 3: 2, 4: -1})
    assert st.haitch(before, change) == st.distinct(before + change) - st.distinct(before)
