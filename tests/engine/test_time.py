"""Time: timed iterations in each flush mode give the results of untimed ones.

Iteration i runs at `Time(input_time=i + 1, frontier=i, flush_every_set=mode)`, the seed
page's parallel recipe run in order: each read waits until its table has recorded the
previous time, which the previous iteration wrote, so nothing waits long. With
`flush_every_set=None` nothing is flushed and reads must see the pending changes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Step,
    StoreMaker,
    check_incremental,
    items,
    steps,
    store_property,
    tags,
)
from tests.engine.seed_query import cache as receipt_cache
from tests.engine.seed_query import query as seed_query
from tests.engine.test_composed_queries import (
    labels_per_key,
    line_items,
    products,
    receipts_from_scratch,
    top_two_totals,
)

MODES = [False, True, None]


def timed(mode: bool | None) -> Callable[[int], st.Time]:
    return lambda i: st.Time(input_time=i + 1, frontier=i, flush_every_set=mode)


@pytest.mark.parametrize("mode", MODES)
def test_timed_seed_query_and_cache_match_from_scratch(
    make_store: StoreMaker, mode: bool | None
) -> None:
    @store_property(share=0.5, run=steps(products, line_items))
    def check(make_store: StoreMaker, run: list[Step]) -> None:
        check_incremental(
            make_store,
            seed_query,
            run,
            caches=[(receipt_cache, receipts_from_scratch)],
            time=timed(mode),
        )

    check(make_store)


@pytest.mark.parametrize("mode", MODES)
def test_timed_join_over_a_union_matches_from_scratch(
    make_store: StoreMaker, mode: bool | None
) -> None:
    @store_property(share=0.5, run=steps(items, tags, tags, max_steps=4))
    def check(make_store: StoreMaker, run: list[Step]) -> None:
        check_incremental(make_store, labels_per_key, run, time=timed(mode))

    check(make_store)


@pytest.mark.parametrize("mode", MODES)
def test_timed_top_n_of_totals_matches_from_scratch(
    make_store: StoreMaker, mode: bool | None
) -> None:
    @store_property(share=0.5, run=steps(items))
    def check(make_store: StoreMaker, run: list[Step]) -> None:
        check_incremental(make_store, top_two_totals, run, time=timed(mode))

    check(make_store)
