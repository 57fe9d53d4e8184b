"""No SQL is built from names or values without quoting or parameters: hostile table
names, field names and values go through the SQLite and Postgres stores and come back
exactly, every table survives, and the results equal the memory store's.

Table names are the graph's (`sdv_<digest>_...` in the Django layer) but a store quotes
whatever name a state has, so here every state is renamed with a hostile prefix (quotes,
semicolons, `"; DROP TABLE`, `%s`, `?`, unicode). Field names are Python identifiers,
unicode included; values are any text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.stores.postgres_schemas import Schemas, require_postgres

HOSTILE = [
    "'; DROP TABLE last_update; --",
    '"; DROP TABLE last_update; --',
    "Robert'); DROP TABLE sentinel;--",
    "%s %(x)s ? :1 $1",
    "back\\slash \\' \\\"",
    "línea\nnueva\ttab",
    "名前 🧨 ñ",
    "",
]
PREFIXES = ["a\"b'c;d%s?--é_", 'x"; DROP TABLE sentinel; --_', "naïve 名_"]


class Ωrder(st.Data):
    clé: str
    名前: str
    qty: int


def query(a: st.ZSet[Ωrder], b: st.ZSet[Ωrder]) -> tuple[Any, Any, Any]:
    by_clé = st.Index.pick(Ωrder, lambda o: o.clé)
    sums = st.group_reduce_flatten(a, by=by_clé, zero=int, pick_value=lambda o: o.qty)
    joined = st.join(a, b, on_left=by_clé, on_right=st.Index.pick(Ωrder, lambda o: o.名前))
    top = st.first_n(st.distinct(b), index=st.Index.pick(Ωrder, lambda o: (o.名前, o.clé)), n=3)
    return sums, joined, top


def hostile_graph(prefix: str) -> st.Graph:
    graph = st.compile(query)
    for v in graph.vertices:
        v.states = tuple(replace(s, name=prefix + s.name) for s in v.states)
    return graph


@contextmanager
def sqlite_store(graph: st.Graph) -> Iterator[tuple[Any, Any]]:
    with st.connection_sqlite(":memory:") as conn:
        conn.execute("CREATE TABLE sentinel (x INTEGER)")
        conn.commit()
        yield st.StoreSQLite.from_graph(conn, graph, create_tables=True), conn


@contextmanager
def postgres_store(graph: st.Graph) -> Iterator[tuple[Any, Any]]:
    require_postgres()
    schemas = Schemas()
    try:
        with psycopg.connect(schemas.new_url()) as conn:
            conn.execute("CREATE TABLE sentinel (x INTEGER)")
            conn.commit()
            yield st.StorePostgres.from_graph(conn, graph, create_tables=True), conn
    finally:
        schemas.close()


def tables(conn: Any) -> set[str]:
    if isinstance(conn, sqlite3.Connection):
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return {r[0] for r in rows}


texts = hs.one_of(hs.sampled_from(HOSTILE), hs.text(max_size=8).map(lambda s: s.replace("\0", "")))
rows = hs.builds(Ωrder, clé=texts, 名前=texts, qty=hs.integers(-3, 3))
changes = hs.lists(
    hs.tuples(hs.integers(0, 1), hs.lists(hs.tuples(rows, hs.sampled_from([1, -1])), max_size=4)),
    min_size=1,
    max_size=4,
)


def run(store: Any, graph: st.Graph, steps: list[tuple[int, list[tuple[Ωrder, int]]]]) -> list[Any]:
    outs = []
    for side, change in steps:
        z: dict[Ωrder, int] = {}
        for row, w in change:
            z[row] = z.get(row, 0) + w
        inputs = [st.ZSetPython(), st.ZSetPython()]
        inputs[side] = st.ZSetPython({r: w for r, w in z.items() if w})
        outs.append(st.iteration(store, graph, inputs))
    return outs


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_hostile_table_names_field_names_and_values_round_trip(engine: str, prefix: str) -> None:
    graph = hostile_graph(prefix)
    maker = sqlite_store if engine == "sqlite" else postgres_store
    with maker(graph) as (store, conn):
        before = tables(conn)
        assert {s.name for s in graph.states} <= before
        assert {"sentinel", "last_update"} <= before

        @given(steps=changes)
        def check(steps: list[tuple[int, list[tuple[Ωrder, int]]]]) -> None:
            memory = st.StorePython.from_graph(graph)
            assert run(store, graph, steps) == run(memory, graph, steps)
            # and what the SQL store holds equals what the memory store holds
            for spec in graph.states:
                assert store.state(spec).zset() == memory.state(spec).zset(), spec.name
            run(store, graph, [(s, [(r, -w) for r, w in c]) for s, c in steps])  # undo

        check()
        assert tables(conn) == before


@pytest.mark.postgres
def test_a_nul_in_an_indexed_text_key_is_refused_on_postgres_and_nothing_is_written() -> None:
    """Postgres text cannot hold NUL: the iteration fails and rolls back (SQLite keeps it)."""
    graph = hostile_graph(PREFIXES[0])
    good = Ωrder(clé="a", 名前="b", qty=1)
    bad = Ωrder(clé="a\0b", 名前="x", qty=2)
    with postgres_store(graph) as (store, conn):
        run(store, graph, [(0, [(good, 1)])])
        before = {spec.name: store.state(spec).zset() for spec in graph.states}
        with pytest.raises(psycopg.DataError, match="NUL"):
            run(store, graph, [(0, [(bad, 1)])])
        assert {spec.name: store.state(spec).zset() for spec in graph.states} == before
    with sqlite_store(graph) as (store, conn):
        memory = st.StorePython.from_graph(graph)
        assert run(store, graph, [(0, [(bad, 1)])]) == run(memory, graph, [(0, [(bad, 1)])])
