"""The seed page's SQL examples, run as written: one process inserts through a store it
creates the tables for; another process, later, attaches with create_tables=False and
reads the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stepping_django import engine as st
from tests.engine.seed_query import LineItem, Product, graph
from tests.engine.stores.conftest import Backend

ROOT = Path(__file__).resolve().parents[3]

READER = """
import sys
from stepping_django import engine as st
from tests.engine.seed_query import cache, graph

kind, target = sys.argv[1:]
if kind == "sqlite":
    with st.connection_sqlite(target) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=False)
        zset = cache.zset(store)
        print(zset)
else:
    with st.connection_postgres(target) as conn:
        store = st.StorePostgres.from_graph(conn, graph, create_tables=False)
        zset = cache.zset(store)
        print(zset)
"""

RECEIPTS = ["Basket id: 1 total: $23.0", "Basket id: 2 total: $6.0"]


def insert_as_the_seed_does(backend: Backend) -> None:
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=True)

        (product_action, line_item_action) = st.actions(store, graph)
        product_action.insert(
            Product(name="tv", price=3),
            Product(name="radio", price=5),
        )
        line_item_action.insert(
            LineItem(basket_id=1, product_name="radio", qty=4),
            LineItem(basket_id=1, product_name="tv", qty=1),
            LineItem(basket_id=2, product_name="tv", qty=2),
        )


def read_in_another_process(backend: Backend) -> str:
    done = subprocess.run(
        [sys.executable, "-c", READER, backend.name, backend.target],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_seed_cache_is_read_by_another_process(backend: Backend) -> None:
    insert_as_the_seed_does(backend)
    shown = read_in_another_process(backend)
    rows = [line for line in shown.splitlines() if "Basket" in line]
    assert len(rows) == 2
    for row, receipt in zip(rows, sorted(RECEIPTS)):
        assert receipt in row and row.split("│")[1].strip() == "1"


def test_seed_path_may_be_a_pathlib_path(tmp_path: Path) -> None:
    sqlite_path = tmp_path / "my.db"
    with st.connection_sqlite(sqlite_path) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        (product_action, _) = st.actions(store, graph)
        product_action.insert(Product(name="tv", price=3))
    assert sqlite_path.exists()


def test_creating_tables_again_keeps_the_data_and_times(backend: Backend) -> None:
    insert_as_the_seed_does(backend)
    before = backend.dump()
    with backend.connect() as conn:
        backend.store.from_graph(conn, graph, create_tables=True)
    assert backend.dump() == before
    assert sorted(RECEIPTS) == sorted(
        line.split("│")[2].strip()
        for line in read_in_another_process(backend).splitlines()
        if "Basket" in line
    )
