"""neg: every weight negated."""

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


def negated(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.neg(a)


def negated_twice(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.neg(st.neg(a))


@store_property(run=steps(items))
def test_neg_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, negated, run)


@store_property(run=steps(items))
def test_neg_twice_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, negated_twice, run)


def test_neg_from_scratch_flips_each_weight() -> None:
    z = st.ZSetPython({Item(key=0, value=0): 2, Item(key=1, value=0): -1})
    assert st.neg(z) == st.ZSetPython({Item(key=0, value=0): -2, Item(key=1, value=0): 1})
