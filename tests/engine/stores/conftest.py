"""`backend`: the same test on a SQLite file and on a fresh Postgres schema.

A backend names a database that several connections, threads and processes can open
(`connect()`), and can dump every table exactly, to compare before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stepping_django import engine as st
from stepping_django.engine.stores.postgres import close_pools
from tests.engine.seed_query import ReceiptItem, cache
from tests.engine.stores.postgres_schemas import Schemas, require_postgres


@dataclass
class Backend:
    name: str
    target: str
    store: type[st.StoreSQL]
    connect: Callable[[], AbstractContextManager[Any]]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, sorted: two dumps are equal only if nothing changed."""
        with self.connect() as conn:
            names = [r[0] for r in conn.execute("SELECT table_name FROM last_update").fetchall()]
            out = {"last_update": sorted(conn.execute("SELECT * FROM last_update").fetchall())}
            for name in names:
                table = self.store.dialect.quote(name)
                rows = conn.execute(f"SELECT * FROM {table}", []).fetchall()
                out[name] = sorted(
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows
                )
            return out


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "store.db")
        yield Backend("sqlite", path, st.StoreSQLite, lambda: st.connection_sqlite(path))
        return
    require_postgres()
    schemas = Schemas()
    url = schemas.new_url()
    try:
        yield Backend("postgres", url, st.StorePostgres, lambda: st.connection_postgres(url))
    finally:
        close_pools()
        schemas.close()


def raw_connect(backend: Backend) -> Any:
    """A plain DB-API connection (not from a pool), for tests that hold several."""
    if backend.name == "sqlite":
        return st.connection_sqlite(backend.target)
    return psycopg.connect(backend.target)


def settle_receipts(store: st.StoreSQL) -> st.ZSetPython[ReceiptItem]:
    """Changes of unknown stored weight on the seed cache's table (an integrate's state
    never reads it): a retraction of a stored row, of a row stored twice, of an absent row
    (stored negative), and an addition to a stored row; then an addition settling the
    negative row, and a new row while it is still stored. Returns the integral they must
    leave."""
    receipts = store.state(cache.spec)
    kept, dropped, twice, absent, fresh = (ReceiptItem(basket_id=i, total=1.0) for i in range(5))
    for change in (
        {kept: 1, dropped: 1, twice: 2},
        {dropped: -1, twice: -1, absent: -1, kept: 2},
        {absent: 1, fresh: 1},
    ):
        store.begin(st.Time())
        receipts.add(st.ZSetPython(change))
        store.commit(st.Time())
    return st.ZSetPython({kept: 3, twice: 1, fresh: 1})
