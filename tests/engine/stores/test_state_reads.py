"""SQL states answer every read exactly as the memory store does.

Rows carry a key of each kind the stores map to a column type (typed and orderable,
text encoded, or equality-only bytes), some of them nullable. One batch is committed, a
second left pending, and then `by_index` (also before the second), `first` (per ordered
scan, ascending and descending, with and without groups), `lookup`, `weights` and `zset`
must equal the memory state's answers:
the SQL order, the NULL handling and the merge with pending changes all agree with
`Index.sort_key` and identity tie-breaks.
"""

from __future__ import annotations

import datetime
import decimal
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.memory import StorePython
from tests.engine.stores.conftest import Backend, raw_connect


class Row(st.Data):
    g: int | None
    i: int | None
    f: float
    s: str
    b: bool
    d: datetime.date
    dt: datetime.datetime
    u: uuid.UUID
    dec: decimal.Decimal
    tup: tuple[int, ...]


FIELDS = ("i", "f", "s", "b", "d", "dt", "u", "dec", "tup")
by_group = st.Index.pick(Row, lambda r: r.g)
by_group_then_text = st.Index.pick(Row, lambda r: (r.g, r.s), ascending=(True, False))
orders = [
    st.Index.pick(Row, lambda r, name=name: getattr(r, name), ascending=asc)
    for name in FIELDS
    for asc in (True, False)
]
ORDERED = tuple(
    [Ordered(o) for o in orders]
    + [Ordered(o, by_group) for o in orders]
    + [Ordered(by_group_then_text)]
)
SPEC = StateSpec("st_reads", indexes=(by_group, by_group_then_text), ordered=ORDERED)
UUIDS = [uuid.UUID(int=n) for n in (1, 2**64, 2**127)]

rows = hs.builds(
    Row,
    g=hs.none() | hs.integers(0, 2),
    i=hs.none() | hs.integers(-3, 3),
    f=hs.sampled_from([-1.5, 0.0, 2.0, 1e300, float("inf")]),
    s=hs.text(alphabet=["a", "B", "é", "z", "€", "\U0001f600"], max_size=3),
    b=hs.booleans(),
    d=hs.dates(datetime.date(1, 1, 1), datetime.date(2100, 1, 1)),
    dt=hs.datetimes(datetime.datetime(1999, 12, 31), datetime.datetime(2000, 1, 2)),
    u=hs.sampled_from(UUIDS),
    dec=hs.sampled_from([decimal.Decimal("1.5"), decimal.Decimal("-2"), decimal.Decimal("10")]),
    tup=hs.lists(hs.integers(0, 2), max_size=2).map(tuple),
)
batches = hs.dictionaries(rows, hs.integers(-2, 3).filter(bool), max_size=8)


@pytest.fixture
def sql_state(backend: Backend) -> Iterator[tuple[Any, Any]]:
    """A connection and a store over an empty `st_reads` table."""
    with raw_connect(backend) as conn:
        store = backend.store.from_graph(conn, types.SimpleNamespace(states=(SPEC,)), True)
        yield conn, store


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(committed=batches, pending=batches)
def test_reads_equal_the_memory_store(
    sql_state: tuple[Any, Any], committed: dict[Row, int], pending: dict[Row, int]
) -> None:
    conn, store = sql_state
    conn.execute('DELETE FROM "st_reads"')
    conn.commit()
    fresh = type(store)(conn)
    sql = fresh.state(SPEC)
    memory = StorePython().state(SPEC)
    fresh.begin(st.Time())
    for state in (sql, memory):
        state.add(st.ZSetPython(committed))
    fresh.commit(st.Time())
    _check_by_index(sql, memory, [*committed, *pending])
    for state in (sql, memory):
        state.add(st.ZSetPython(pending))
    _check_by_index(sql, memory, [*committed, *pending])

    assert sql.zset() == memory.zset()
    every = [*committed, *pending, Row(**{**_fields(next(iter(committed), None)), "s": "new"})]
    assert sql.weights(every) == memory.weights(every)
    for ix in SPEC.indexes:
        keys = {ix.f(r) for r in every} | {(None, "zz") if ix.is_composite else 7}
        assert sql.lookup(ix, [*keys, *keys]) == memory.lookup(ix, keys)
    groups = {r.g for r in every} | {9}
    for o in ORDERED:
        for n in (1, 3):
            got = sql.first(o, n, groups if o.group is not None else None)
            want = memory.first(o, n, groups if o.group is not None else None)
            assert got == _nonempty(want), (o.order.names, o.order.ascending, n)
    fresh.rollback()


def _check_by_index(sql: Any, memory: Any, rows: list[Row]) -> None:
    """Cache reads by index (one key, several, none found) agree, order included."""
    for ix in SPEC.indexes:
        keys = list({ix.f(r) for r in rows} | {(None, "zz") if ix.is_composite else 7})
        for some in ([keys[0]], keys[:2], keys):
            assert sql.by_index(ix, some) == memory.by_index(ix, some), (ix.names, some)


def _nonempty(firsts: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
    """A group with no positive rows is left out, or listed empty: the same answer."""
    return {g: rows for g, rows in firsts.items() if rows}


def _fields(row: Row | None) -> dict[str, Any]:
    if row is None:
        return {
            "g": None,
            "i": None,
            "f": 0.0,
            "s": "",
            "b": False,
            "d": datetime.date(2000, 1, 1),
            "dt": datetime.datetime(2000, 1, 1),
            "u": UUIDS[0],
            "dec": decimal.Decimal(1),
            "tup": (),
        }
    return {name: getattr(row, name) for name in row.__st_fields__}
