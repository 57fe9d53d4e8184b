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
from tests.engine.stores.postgres_schemas import Schemas, require_postgres, url_for

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
    """Each store in a fresh schema on the test server. A store lives until the next one
    is made (hypothesis makes one per example) or the test ends; then its connection is
    closed and its schema dropped, so a long test holds one connection, not hundreds."""
    require_postgres()
    schemas = Schemas()
    live: list[tuple[psycopg.Connection[Any], str]] = []

    def close_live() -> None:
        while live:
            conn, schema = live.pop()
            conn.close()
            schemas.drop(schema)

    def make(graph: st.Graph) -> st.StorePostgres:
        close_live()
        schema = schemas.new()
        conn = psycopg.connect(url_for(schema))
        live.append((conn, schema))
        return st.StorePostgres.from_graph(conn, graph, create_tables=True)

    try:
        yield make
    finally:
        close_live()
        schemas.close()


STORES: dict[str, Callable[[pytest.FixtureRequest], Iterator[StoreMaker]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=list(STORES))
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    yield from STORES[request.param](request)
