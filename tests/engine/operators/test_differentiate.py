"""differentiate (D): out[t] = in[t] - in[t-1], the inverse of integrate."""

from __future__ import annotations

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


def differentiated(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.differentiate(a)


@store_property(values=steps(items))
def test_differentiate_outputs_the_difference_from_the_previous_value(
    make_store: StoreMaker, values: list[Step]
) -> None:
    outputs = run_stream(make_store, differentiated, values)
    previous = [st.ZSetPython[Item](), *(v for (v,) in values[:-1])]
    assert [out for (out,) in outputs] == [v - p for (v,), p in zip(values, previous)]
