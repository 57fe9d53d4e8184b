"""Postgres specifics: column types, connections the store refuses, and running inside a
transaction someone else owns (as the Django layer does)."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stepping_django import engine as st
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.postgres import (
    POOL_MAX_SIZE,
    PackedArray,
    close_pools,
    pg_array,
    register_packed_arrays,
)
from tests.engine.seed_query import LineItem, Product, cache, graph
from tests.engine.stores.conftest import settle_receipts
from tests.engine.stores.postgres_schemas import Schemas, require_postgres


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    schemas = Schemas()
    try:
        yield schemas.new_url()
    finally:
        close_pools()
        schemas.close()


def test_columns_have_types_that_compare_as_python_does(url: str) -> None:
    with st.connection_postgres(url) as conn:
        st.StorePostgres.from_graph(conn, graph, create_tables=True)
        found = conn.execute(
            "SELECT table_name, column_name, data_type, collation_name, is_nullable "
            "FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall()
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    columns = {(t, c): (ty, coll, null) for t, c, ty, coll, null in found}
    left, _, groups, _ = (s.name for s in graph.states)
    assert columns[("last_update", "t")] == ("bigint", None, "NO")
    assert columns[(left, "identity")] == ("bytea", None, "NO")
    assert columns[(left, "data")] == ("bytea", None, "NO")
    assert columns[(left, "ixd__name__name")] == ("text", "C", "NO")
    assert columns[(left, "c")] == ("bigint", None, "NO")
    assert columns[(groups, "ixd__right_basket_id__right_basket_id")][0] == "bigint"
    assert f"ix__{left}__name" in indexes


def test_floats_and_optional_keys_get_valid_types(url: str) -> None:
    class Reading(st.Data):
        value: float
        note: str | None

    value = st.Index.pick(Reading, lambda r: r.value, ascending=False)
    note = st.Index.pick(Reading, lambda r: r.note)
    spec = StateSpec("readings", indexes=(value, note))
    with st.connection_postgres(url) as conn:
        st.StorePostgres.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        found = dict(
            conn.execute(
                "SELECT column_name, data_type || ' ' || is_nullable "
                "FROM information_schema.columns WHERE table_name = 'readings'"
            ).fetchall()
        )
    assert found["ixd__value__value"] == "double precision NO"
    assert found["ixd__note__note"] == "text YES"


def test_an_autocommit_connection_is_refused_unless_the_caller_owns_the_transaction(
    url: str,
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            st.StorePostgres.from_graph(conn, graph, create_tables=True)
        st.StorePostgres.from_graph(conn, graph, create_tables=True, owns_transaction=False)


def test_with_owns_transaction_false_the_caller_commits_or_rolls_back(url: str) -> None:
    with psycopg.connect(url) as conn:
        st.StorePostgres.from_graph(conn, graph, create_tables=True)

    def receipts() -> list[str]:
        with psycopg.connect(url) as conn:
            store = st.StorePostgres.from_graph(conn, graph, create_tables=False)
            return sorted(str(r) for r, _ in cache.zset(store).iter())

    with psycopg.connect(url, autocommit=True) as conn:
        store = st.StorePostgres.from_graph(
            conn, graph, create_tables=False, owns_transaction=False
        )
        products, line_items = st.actions(store, graph)
        with conn.transaction(force_rollback=True):
            products.insert(Product(name="tv", price=3), time=st.Time(1, 0))
            assert receipts() == []  # not committed: other connections see nothing
        with conn.transaction():
            products.insert(Product(name="tv", price=3), time=st.Time(1, 0))
            line_items.insert(LineItem(basket_id=1, product_name="tv", qty=2), time=st.Time(2, 1))
    assert receipts() == ["Basket id: 1 total: $6.0"]


def test_a_table_name_postgres_would_truncate_is_refused(url: str) -> None:
    spec = StateSpec("t" * 64)
    with st.connection_postgres(url) as conn, pytest.raises(ValueError, match="63 bytes"):
        st.StorePostgres.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)


def test_connections_come_from_one_pool_per_process(url: str) -> None:
    pids = set()
    for _ in range(20):
        with st.connection_postgres(url) as conn:
            pids.add(conn.info.backend_pid)
    assert len(pids) <= POOL_MAX_SIZE


def test_client_side_binding_connections_work_too(url: str) -> None:
    """Django's psycopg connections bind parameters on the client (`ClientCursor`)."""
    with psycopg.connect(url, cursor_factory=psycopg.ClientCursor) as conn:
        store = st.StorePostgres.from_graph(conn, graph, create_tables=True)
        products, line_items = st.actions(store, graph)
        products.insert(Product(name="tv", price=3), time=st.Time(1, 0))
        line_items.insert(LineItem(basket_id=1, product_name="tv", qty=2), time=st.Time(2, 1))
        products.replace(Product(name="tv", price=3), Product(name="tv", price=4))
        assert [str(r) for r, _ in cache.zset(store).iter()] == ["Basket id: 1 total: $8.0"]


def test_importing_the_engine_does_not_import_psycopg() -> None:
    """Scripts and SQLite-only projects should not pay for psycopg's import."""
    code = "import sys, stepping_django.engine; print('psycopg' in sys.modules)"
    root = Path(__file__).resolve().parents[3]
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "False"


PACKED_VALUES: dict[str, list[Any]] = {
    "bytea[]": [b"", b"\x00\xff", b"x" * 300],
    "bigint[]": [0, -1, 2**63 - 1, -(2**63)],
    "float8[]": [0.0, -2.5, 1e300, float("inf"), float("-inf")],
    "boolean[]": [True, False],
    "date[]": [
        datetime.date(1, 1, 1), datetime.date(1999, 12, 31), datetime.date(2000, 1, 1),
        datetime.date(2023, 1, 31), datetime.date(9999, 12, 31),
    ],
    "uuid[]": [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=12345)],
    "text[]": ["", "a", "é名前", "x" * 1000, "quote ' and \" and {,}"],
}  # fmt: skip


@pytest.mark.parametrize("array_type", sorted(PACKED_VALUES))
def test_arrays_packed_by_the_store_reach_the_server_as_the_values_they_hold(
    url: str, array_type: str
) -> None:
    values = PACKED_VALUES[array_type]
    with psycopg.connect(url) as conn:
        register_packed_arrays(conn)
        for sent in (values, values[:1], []):
            packed = pg_array(array_type, sent)
            assert isinstance(packed, PackedArray)
            (got,) = conn.execute(f"SELECT %b::{array_type}", [packed]).fetchone()
            assert got == sent


def test_arrays_holding_null_or_of_other_types_are_left_to_psycopg() -> None:
    assert pg_array("bigint[]", [1, None]) == [1, None]
    assert pg_array("numeric[]", [decimal.Decimal("1.5")]) == [decimal.Decimal("1.5")]
    with pytest.raises(psycopg.DataError, match="NUL"):
        pg_array("text[]", ["a\0b"])


@pytest.mark.parametrize("merges", [True, False], ids=["merge", "cte"])
def test_rows_of_unknown_weight_settle_alike_with_merge_and_on_older_servers(
    url: str, merges: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers before 15 have no MERGE: the same changes give the same tables either way."""
    if not merges:
        monkeypatch.setattr("stepping_django.engine.stores.postgres.MERGE_SINCE", 10**9)
    with st.connection_postgres(url) as conn:
        store = st.StorePostgres.from_graph(conn, graph, create_tables=True)
        assert store.dialect.merges is merges
        expected = settle_receipts(store)
        stored = conn.execute(f'SELECT "c" FROM "{cache.spec.name}" ORDER BY "c"').fetchall()
        assert stored == [(1,), (1,), (3,)]
        assert store.state(cache.spec).zset() == expected


def test_a_change_of_tens_of_megabytes_is_written_without_hanging(url: str) -> None:
    """psycopg 3.3 waits for the server at a pipeline's sync without first sending the rest
    of a statement too big for the socket (the server waits for that rest): this write
    hung for ever before the store pushed each statement out itself."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.stores.big_write", url, "2000", "20000"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2000", "40000000"]


class Score(st.Data):
    player: str
    points: int


def test_the_top_rows_of_each_group_are_an_index_scan_under_a_limit(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grouped top n joins each group LATERAL to its own ORDER BY ... LIMIT: Postgres
    reads the first index of each group up to the limit, not the whole group (a window
    over the group read all of it)."""
    by_player = st.Index.pick(Score, lambda s: s.player)
    by_points = st.Index.pick(Score, lambda s: s.points, ascending=False)
    ordered = Ordered(by_points, by_player)
    spec = StateSpec("scores", ordered=(ordered,))
    with st.connection_postgres(url) as conn:
        store = st.StorePostgres.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        state = store.state(spec)
        store.begin(st.Time())
        rows = {Score(player=p, points=n): 1 for p in "abcd" for n in range(2_000)}
        state.add(st.ZSetPython(rows))
        store.commit(st.Time())
        conn.execute(f'ANALYZE "{spec.name}"')
        sent: list[tuple[str, Any]] = []
        query = store.dialect.query

        def traced(conn: Any, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
            sent.append((sql, params))
            return query(conn, sql, params)

        monkeypatch.setattr(store.dialect, "query", traced)
        top = state.first(ordered, 2, ["a", "b", "z"])
        ((sql, params),) = sent
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params))
    assert top == {
        p: [(Score(player=p, points=1_999), 1), (Score(player=p, points=1_998), 1)] for p in "ab"
    }
    assert "LATERAL" in sql and "ROW_NUMBER" not in sql
    lines = plan.splitlines()
    (limit,) = [i for i, line in enumerate(lines) if "Limit" in line]
    index_scan = f"Index Scan using ix__{spec.name}__first__"
    assert any(index_scan in line for line in lines[limit + 1 :]), plan
    assert not any(w in plan for w in ("Seq Scan", "Sort", "WindowAgg")), plan
