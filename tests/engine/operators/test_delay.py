"""delay (z^-1): the previous iteration's value. It has no snapshot meaning, so the test
checks its stream definition: out[0] = 0, out[t] = in[t-1]."""

from __future__ import annotations

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    items,
    run_stream,
    steps,
    store_property,
)


def delayed(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.delay(a)


by_key = st.Index.pick(Item, lambda i: i.key)


def delayed_indexed(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.delay_indexed(a, indexes=(by_key,))


def delayed_twice(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.delay(st.delay(a))


@store_property(values=steps(items))
def test_delay_outputs_the_previous_value(make_store: StoreMaker, values: list[Step]) -> None:
    outputs = run_stream(make_store, delayed, values)
    assert outputs == [(st.ZSetPython(),), *values[:-1]]


@store_property(values=steps(items))
def test_delay_indexed_outputs_the_previous_value(
    make_store: StoreMaker, values: list[Step]
) -> None:
    outputs = run_stream(make_store, delayed_indexed, values)
    assert outputs == [(st.ZSetPython(),), *values[:-1]]


@store_property(values=steps(items))
def test_delay_twice_outputs_the_value_two_steps_back(
    make_store: StoreMaker, values: list[Step]
) -> None:
    outputs = run_stream(make_store, delayed_twice, values)
    empty: Step = (st.ZSetPython(),)
    assert outputs == [empty, empty, *values[:-2]][: len(values)]


def test_delay_of_a_concrete_zset_is_refused() -> None:
    with pytest.raises(st.CompileError, match="delay"):
        st.delay(st.ZSetPython({1: 1}))
