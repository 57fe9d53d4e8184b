"""add and add3: unions with weights summed; several inputs change in one iteration."""

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


def added(a: st.ZSet[Item], b: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.add(a, b)


def added3(a: st.ZSet[Item], b: st.ZSet[Item], c: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.add3(a, b, c)


def added_to_itself(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.add(a, a)


@store_property(run=steps(items, items))
def test_add_of_two_inputs_changing_together_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, added, run)


@store_property(run=steps(items, items, items))
def test_add3_matches_from_scratch(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, added3, run)


@store_property(run=steps(items))
def test_add_of_a_stream_to_itself_doubles_it(make_store: StoreMaker, run: list[Step]) -> None:
    check_incremental(make_store, added_to_itself, run)


def test_add_cancels_opposite_weights() -> None:
    row = Item(key=1, value=1)
    assert st.add(st.ZSetPython({row: 2}), st.ZSetPython({row: -2})).data == {}
