"""transitive_closure: Pair(x, z) for every z reachable from x by edges of positive weight."""

from __future__ import annotations

from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Step,
    StoreMaker,
    check_incremental,
    run_stream,
    steps,
    store_property,
)

Edge = st.Pair[int, int]

edges: hs.SearchStrategy[Edge] = hs.builds(st.Pair, hs.integers(0, 3), hs.integers(0, 3))


def closure(a: st.ZSet[st.Pair[int, int]]) -> st.ZSet[st.Pair[int, int]]:
    return st.transitive_closure(a)


@store_property(run=steps(edges))
def test_transitive_closure_with_cycles_and_deletions_matches_from_scratch(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, closure, run)


def e(x: int, y: int) -> Edge:
    return st.Pair(x, y)


def test_deleting_an_edge_breaks_paths_and_reinserting_restores_them(
    make_store: StoreMaker,
) -> None:
    chain = st.ZSetPython({e(1, 2): 1, e(2, 3): 1})
    outputs = run_stream(
        make_store,
        closure,
        [(chain,), (st.ZSetPython({e(2, 3): -1}),), (st.ZSetPython({e(2, 3): 1}),)],
    )
    assert [out for (out,) in outputs] == [
        st.ZSetPython({e(1, 2): 1, e(2, 3): 1, e(1, 3): 1}),
        st.ZSetPython({e(2, 3): -1, e(1, 3): -1}),
        st.ZSetPython({e(2, 3): 1, e(1, 3): 1}),
    ]


def test_a_cycle_reaches_every_node_from_every_node() -> None:
    cycle = st.ZSetPython({e(1, 2): 1, e(2, 3): 1, e(3, 1): 1})
    assert closure(cycle) == st.ZSetPython({e(x, y): 1 for x in (1, 2, 3) for y in (1, 2, 3)})


def test_an_edge_of_weight_two_counts_once_and_negative_not_at_all() -> None:
    z = st.ZSetPython({e(1, 2): 2, e(2, 3): -1})
    assert closure(z) == st.ZSetPython({e(1, 2): 1})
