"""`make_store`: every engine test runs on every store.

Each parameter builds a fresh, empty store for a compiled graph. SQL stores join the list
as they are added; Postgres ones fail in CI (never skip) when the server is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest

from stepping_django import engine as st
from tests.engine.stores.postgres_schemas import Schemas, require_postgres

StoreMaker = Callable[[st.Graph], Any]


def _memory(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    yield st.StorePython.from_graph


def _sqlite(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    """Each store on its own in-memory SQLite database."""
    with ExitStack() as stack:

        def make(graph: st.Graph) -> st.StoreSQLite:
            conn = stack.enter_context(st.connection_sqlite(":memory:"))
            return st.StoreSQLite.from_graph(conn, graph, create_tables=True)

        yield make


def _postgres(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    """Stores in one fresh schema per test on the test server, dropped afterwards.

    Hypothesis asks for a new, empty store for every example, usually of the same graph:
    the tables are then emptied and their times reset rather than created again, which
    keeps the Postgres runs quick. So a store lives until the next one is made for the
    same graph."""
    require_postgres()
    schemas = Schemas()
    with ExitStack() as stack:
        stack.callback(schemas.close)
        conn = stack.enter_context(psycopg.connect(schemas.new_url()))

        def make(graph: st.Graph) -> st.StorePostgres:
            store = st.StorePostgres.from_graph(conn, graph, create_tables=True)
            for spec in graph.states:
                conn.execute(f'DELETE FROM "{spec.name}"')
            conn.execute("UPDATE last_update SET t = 0")
            conn.commit()
            return store

        yield make


STORES: dict[str, Callable[[pytest.FixtureRequest], Iterator[StoreMaker]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=list(STORES))
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    yield from STORES[request.param](request)
