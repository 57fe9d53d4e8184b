"""The seed page's parallel example, and why it needs frontiers.

Batches run in a process pool, each at its own time with the previous time as frontier:
the result must equal a sequential run's. A second test forces the interleaving a missing
wait would allow (a later time reading a table before the earlier time has written it),
shows that the comparison catches it, and that waiting on the frontier prevents it.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from stepping_django import engine as st
from tests.engine.seed_query import LineItem, Product, cache, graph
from tests.engine.stores.conftest import Backend, raw_connect


class Reading(st.Data):
    meter: int
    value: int


class MeterTotal(st.Data):
    meter: int
    total: int


def to_total(p: st.Pair[int, int]) -> MeterTotal:
    return MeterTotal(meter=p.right, total=p.left)


def pick_value(r: Reading) -> int:
    return r.value


totals_cache = st.Cache[MeterTotal]()


def meter_totals(readings: st.ZSet[Reading]) -> st.ZSet[MeterTotal]:
    per_meter = st.group_reduce_flatten(
        st.distinct(readings),
        by=st.Index.pick(Reading, lambda r: r.meter),
        zero=int,
        pick_value=pick_value,
    )
    totals = st.map(per_meter, f=to_total)
    _ = totals_cache[totals](lambda z: st.integrate(z))
    return totals


meter_graph = st.compile(meter_totals)

READINGS = [Reading(meter=i % 97, value=i % 13) for i in range(6_000)]

_backend: Backend


def insert_chunk(chunk: list[Reading], time: st.Time) -> None:
    """One worker's batch, as the seed writes it: its own connection and attached store."""
    with _backend.connect() as conn:
        store = _backend.store.from_graph(conn, meter_graph, create_tables=False)
        (action,) = st.actions(store, meter_graph)
        action.insert(*chunk, time=time)


def cached(backend: Backend, g: st.Graph, c: st.Cache[Any]) -> st.ZSetPython[Any]:
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, g, create_tables=False)
        return c.zset(store).to_python()


def test_parallel_batches_give_the_sequential_result(backend: Backend) -> None:
    global _backend
    _backend = backend
    with backend.connect() as conn:
        backend.store.from_graph(conn, meter_graph, create_tables=True)

    batches = list(st.batched(READINGS, 1000))
    times = [
        st.Time(input_time=i, frontier=i - 1, flush_every_set=True)
        for i, _ in enumerate(batches, start=1)
    ]
    with concurrent.futures.ProcessPoolExecutor(max_workers=4) as executor:
        for _ in executor.map(insert_chunk, batches, times):
            pass

    sequential = st.StorePython.from_graph(meter_graph)
    for batch in batches:
        st.actions(sequential, meter_graph)[0].insert(*batch)
    assert cached(backend, meter_graph, totals_cache) == totals_cache.zset(sequential)
    assert {t for _, t in backend.dump()["last_update"]} == {len(batches)}


def test_a_read_before_the_frontier_is_caught_and_waiting_prevents_it(backend: Backend) -> None:
    """Time 1 inserts products, time 2 line items. If time 2 reads the join's product
    table before time 1 has committed, the receipts miss the join; the comparison with a
    sequential run catches that. With the right frontier, time 2 waits and all is well."""
    with backend.connect() as conn:
        backend.store.from_graph(conn, graph, create_tables=True)
    expected = ["Basket id: 1 total: $6.0"]
    t1 = st.Time(input_time=1, frontier=0, flush_every_set=None)
    product = Product(name="tv", price=3)
    item = LineItem(basket_id=1, product_name="tv", qty=2)

    def run_time_2(frontier: int) -> None:
        with raw_connect(backend) as conn:
            store = backend.store.from_graph(conn, graph, create_tables=False)
            st.actions(store, graph)[1].insert(item, time=st.Time(input_time=2, frontier=frontier))

    def receipts() -> list[str]:
        return sorted(str(r) for r, _ in cached(backend, graph, cache).iter())

    with raw_connect(backend) as conn:
        store = backend.store.from_graph(conn, graph, create_tables=False)
        st.actions(store, graph)[0].insert(product, time=t1)
        run_time_2(frontier=-1)  # wrong: does not wait for time 1
        store.commit(st.Time(input_time=1, frontier=0))
    assert receipts() != expected

    with backend.connect() as conn:
        for spec in graph.states:
            conn.execute(f'DELETE FROM "{spec.name}"')
        conn.execute("UPDATE last_update SET t = 0")
    with raw_connect(backend) as conn:
        store = backend.store.from_graph(conn, graph, create_tables=False)
        st.actions(store, graph)[0].insert(product, time=t1)
        waiting = threading.Thread(target=run_time_2, args=(1,))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive(), "time 2 must wait for time 1"
        store.commit(st.Time(input_time=1, frontier=0))
    waiting.join(10)
    assert not waiting.is_alive()
    assert receipts() == expected


class Numbers(st.Data):
    n: int


def doubled(p: Numbers) -> Numbers:
    return Numbers(n=p.n * 2)


def running_doubles(numbers: st.ZSet[Numbers]) -> st.ZSet[Numbers]:
    return st.map(st.integrate(numbers), f=doubled)


doubles_graph = st.compile(running_doubles)


def test_with_flush_every_set_a_view_is_read_as_of_its_own_iteration(backend: Backend) -> None:
    """integrate's output is a view its consumer reads after the integral's table was
    committed, so a later time may already have written it: the consumer must still see
    this iteration's integral, not the later one."""
    with backend.connect() as conn:
        backend.store.from_graph(conn, doubles_graph, create_tables=True)
    pipelined = st.Time(input_time=1, frontier=0, flush_every_set=True)

    class LaterTimeSneaksIn(backend.store):  # type: ignore[name-defined,misc]
        def after_set(self, states: tuple[Any, ...], time: st.Time) -> None:
            super().after_set(states, time)
            with raw_connect(backend) as other:
                later = backend.store.from_graph(other, doubles_graph, create_tables=False)
                st.actions(later, doubles_graph)[0].insert(
                    Numbers(n=100), time=st.Time(input_time=2, frontier=1)
                )

    with raw_connect(backend) as conn:
        store = LaterTimeSneaksIn.from_graph(conn, doubles_graph, create_tables=False)
        (out,) = st.actions(store, doubles_graph)[0].insert(Numbers(n=1), time=pipelined)
    assert out == st.ZSetPython({Numbers(n=2): 1})
