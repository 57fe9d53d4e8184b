"""The random-batch driver shared by the operator tests.

`check_incremental` compiles a query, runs random changes through it on a store one
iteration at a time, and after every iteration checks DBSP's correctness statement:
the integral of the incremental outputs equals the query evaluated from scratch (the same
function called with concrete `st.ZSetPython` values) on the integral of the inputs.

Changes are small on purpose (the SQL stores run the same tests): at most 6 steps of at
most 6 entries, drawn from small domains so that keys collide. An entry is an insert
(weight 1 to 3), a remove (which may push a weight below zero) or a replace; rows repeat
within a change, so a row can be inserted and removed in the same batch.

On SQLite, every iteration also fails if SQLite reads a state table whole for any of its
statements (`tests/engine/stores/query_plans.py`): no result shows such a read.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.stores.query_plans import no_full_reads

T = TypeVar("T")

Change = st.ZSetPython[Any]
Step = tuple[Change, ...]
StoreMaker = Callable[[st.Graph], Any]

MAX_STEPS = 6
MAX_ENTRIES = 6

#: The share of the profile's `max_examples` each store runs. A SQL store pays for its
#: tables and round trips in every example, and memory already explores the logic, so the
#: SQL stores run fewer examples (the `ci` profile is derandomized, so always the same ones).
STORE_SHARE = {"memory": 1.0, "sqlite": 0.5, "postgres": 0.15}
MIN_EXAMPLES = 5

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

#: For hypothesis tests that take no store.
engine_settings = settings(suppress_health_check=HEALTH)


def store_name(make_store: StoreMaker) -> str:
    """Which `make_store` parameter this is: "memory", "sqlite", "postgres" or other."""
    if getattr(make_store, "__self__", None) is st.StorePython:
        return "memory"
    qualname = getattr(make_store, "__qualname__", "")
    for name in STORE_SHARE:
        if f"_{name}." in qualname:
            return name
    return "other"


def store_property(
    share: float = 1.0, **strategies: hs.SearchStrategy[Any]
) -> Callable[[Callable[..., None]], Callable[[StoreMaker], None]]:
    """`@given(**strategies)` for a test of `make_store`, with fewer examples on SQL stores
    (and `share` of them for a heavy test).

    The decorated function takes `make_store` and the drawn values; the test pytest sees
    takes `make_store` only and runs hypothesis inside, sized for that store.
    """

    def decorate(test: Callable[..., None]) -> Callable[[StoreMaker], None]:
        def run(make_store: StoreMaker) -> None:
            scale = STORE_SHARE.get(store_name(make_store), 0.15) * share
            profile = settings.default
            assert profile is not None
            examples = max(MIN_EXAMPLES, round(profile.max_examples * scale))

            def prop(**drawn: Any) -> None:
                test(make_store, **drawn)

            prop.__name__, prop.__qualname__ = test.__name__, test.__qualname__
            prop.__module__ = test.__module__
            checked = settings(max_examples=examples, suppress_health_check=HEALTH)(
                given(**strategies)(prop)
            )
            checked()

        run.__name__, run.__qualname__ = test.__name__, test.__qualname__
        run.__module__, run.__doc__ = test.__module__, test.__doc__
        return run

    return decorate


class Item(st.Data):
    key: int
    value: int


class Tag(st.Data):
    key: int | None
    label: str


items: hs.SearchStrategy[Item] = hs.builds(Item, key=hs.integers(0, 2), value=hs.integers(0, 3))
tags: hs.SearchStrategy[Tag] = hs.builds(
    Tag, key=hs.none() | hs.integers(0, 2), label=hs.sampled_from(["a", "b"])
)
small_ints: hs.SearchStrategy[int] = hs.integers(0, 4)


class Priced(st.Data):
    """Fields whose equal values can be written differently (1.0 and 1.00, 0.0 and -0.0)."""

    amount: decimal.Decimal
    weight: float


priced: hs.SearchStrategy[Priced] = hs.builds(
    Priced,
    amount=hs.sampled_from(["1", "1.0", "1.00", "2.5", "2.50"]).map(decimal.Decimal),
    weight=hs.sampled_from([0.0, -0.0, 1.5]),
)


def changes(
    rows: hs.SearchStrategy[T], max_entries: int = MAX_ENTRIES
) -> hs.SearchStrategy[Change]:
    """One change: inserts, removes and replaces of rows, summed into a Z-set."""
    insert = hs.tuples(rows, hs.sampled_from([1, 1, 2, 3])).map(lambda rw: [rw])
    remove = hs.tuples(rows, hs.sampled_from([-1, -1, -2])).map(lambda rw: [rw])
    replace = hs.tuples(rows, rows).map(lambda on: [(on[0], -1), (on[1], 1)])
    entry = hs.one_of(insert, remove, replace)
    return hs.lists(entry, max_size=max_entries).map(
        lambda entries: st.ZSetPython([rw for e in entries for rw in e])
    )


def steps(
    *inputs: hs.SearchStrategy[Any], max_steps: int = MAX_STEPS
) -> hs.SearchStrategy[list[Step]]:
    """A sequence of iterations; each changes every input at once (most often by nothing)."""
    return hs.lists(hs.tuples(*(changes(rows) for rows in inputs)), min_size=1, max_size=max_steps)


def as_tuple(result: Any) -> tuple[Change, ...]:
    results = result if isinstance(result, tuple) else (result,)
    return tuple(st.ZSetPython(dict(z.iter())) for z in results)


def show(z: Any) -> str:
    return repr(sorted((repr(row), c) for row, c in z.iter()))


Expectation = tuple[st.Cache[Any], Callable[..., Any]]


def iterate(
    store: Any, graph: st.Graph, inputs: Sequence[Any], time: st.Time
) -> tuple[Change, ...]:
    """`st.iteration`, audited on SQLite (`no_full_reads`): a keyed read that SQLite
    answers by reading the table whole would pass every other check."""
    if not isinstance(store, st.StoreSQLite):
        return st.iteration(store, graph, inputs, time)
    with no_full_reads(store, graph):
        return st.iteration(store, graph, inputs, time)


def check_incremental(
    make_store: StoreMaker,
    query: Callable[..., Any],
    run: Sequence[Step],
    *,
    caches: Sequence[Expectation] = (),
    time: Callable[[int], st.Time] = lambda i: st.Time(),
) -> None:
    """Run `run` through `query` incrementally and compare with from-scratch after each step.

    `caches` pairs a cache the query fills with a function of the integrated inputs that
    computes, from scratch, what the cache must hold. `time(i)` is the i-th iteration's Time.
    """
    graph = st.compile(query)
    store = make_store(graph)
    totals: list[Change] = [st.ZSetPython() for _ in graph.inputs]
    outputs: list[Change] = [st.ZSetPython() for _ in graph.outputs]
    for i, step in enumerate(run):
        got = iterate(store, graph, step, time(i))
        assert len(got) == len(outputs)
        totals = [total + change for total, change in zip(totals, step)]
        outputs = [total + change for total, change in zip(outputs, got)]
        expected = as_tuple(query(*totals))
        for j, (incremental, scratch) in enumerate(zip(outputs, expected)):
            assert incremental == scratch, (
                f"after step {i}, output {j}:\n incremental  {show(incremental)}\n"
                f" from scratch {show(scratch)}\n inputs {[show(t) for t in totals]}"
            )
        for cache, from_scratch in caches:
            held, want = cache.zset(store), from_scratch(*totals)
            assert held == want, (
                f"after step {i}, cache:\n held         {show(held.to_python())}\n"
                f" from scratch {show(want)}"
            )


def run_stream(
    make_store: StoreMaker, query: Callable[..., Any], values: Sequence[Step]
) -> list[tuple[Change, ...]]:
    """Feed `values` (stream values, not changes) and return each iteration's outputs."""
    graph = st.compile(query)
    store = make_store(graph)
    return [iterate(store, graph, step, st.Time()) for step in values]
