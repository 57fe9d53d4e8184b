"""distinct: every row of positive weight, once. Incremental rule: DBSP's H function."""

from __future__ import annotations

import decimal

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    check_incremental,
    items,
    run_stream,
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


class Amount(st.Data):
    x: float
    d: decimal.Decimal


def distinct_amounts(a: st.ZSet[Amount]) -> st.ZSet[Amount]:
    return st.distinct(a)


def test_equal_rows_written_differently_are_one_row_on_every_store(
    make_store: StoreMaker,
) -> None:
    """0.0 == -0.0 and Decimal("1.0") == Decimal("1.00"): removing one removes the other."""
    plain = Amount(x=0.0, d=decimal.Decimal("1.0"))
    other = Amount(x=-0.0, d=decimal.Decimal("1.00"))
    outputs = run_stream(
        make_store,
        distinct_amounts,
        [(st.ZSetPython({plain: 1}),), (st.ZSetPython({other: -1}),), (st.ZSetPython({plain: 1}),)],
    )
    assert [dict(out.iter()) for (out,) in outputs] == [{plain: 1}, {plain: -1}, {plain: 1}]
