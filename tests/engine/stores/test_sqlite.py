"""SQLite specifics: the seed's schema, and what an iteration sends to the database.

SQLite can trace every statement it runs, which shows that an iteration reads by key
(never a whole table) and that each keyed read is one statement for its whole batch.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepping_django import engine as st
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.sql import SQLState
from tests.engine.seed_query import LineItem, Product, ReceiptItem, cache, graph
from tests.engine.stores.conftest import settle_receipts


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """The seed's store on a file, loaded as the seed loads it, and a statement trace."""
    path = tmp_path / "my.db"
    traced: list[str] = []
    with st.connection_sqlite(path) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        products, line_items = st.actions(store, graph)
        products.insert(Product(name="tv", price=3), Product(name="radio", price=5))
        conn.set_trace_callback(traced.append)
        line_items.insert(
            LineItem(basket_id=1, product_name="radio", qty=4),
            LineItem(basket_id=1, product_name="tv", qty=1),
            LineItem(basket_id=2, product_name="tv", qty=2),
        )
    yield path, traced


def columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int, int]]:
    """(name, type, not null, primary key) of each column, as `.schema` shows them."""
    rows = conn.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', [table])
    return [tuple(r) for r in rows]


def test_schema_is_the_seeds(db: tuple[Path, list[str]]) -> None:
    path, _ = db
    join_left, join_right, groups, receipts = (s.name for s in graph.states)
    with sqlite3.connect(path) as conn:
        assert columns(conn, "last_update") == [("table_name", "TEXT", 0, 1), ("t", "BIGINT", 1, 0)]
        assert columns(conn, join_left) == [
            ("identity", "BLOB", 0, 1),
            ("data", "BLOB", 1, 0),
            ("ixd__name__name", "TEXT", 1, 0),
            ("c", "BIGINT", 1, 0),
        ]
        assert columns(conn, join_right)[2] == ("ixd__product_name__product_name", "TEXT", 1, 0)
        assert [c[0] for c in columns(conn, receipts)] == ["identity", "data", "c"]
        assert columns(conn, groups)[2][:2] == ("ixd__right_basket_id__right_basket_id", "INTEGER")
        indexes = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'"))
        assert indexes[f"ix__{join_left}__name"] == join_left
        assert indexes[f"ix__{join_right}__product_name"] == join_right
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        names = {r[0] for r in conn.execute(f'SELECT "ixd__name__name" FROM "{join_left}"')}
    assert names == {"tv", "radio"}


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed")
def test_the_sqlite3_shell_shows_the_layout(db: tuple[Path, list[str]]) -> None:
    path, _ = db
    shown = subprocess.run(
        ["sqlite3", str(path), ".schema"], capture_output=True, text=True, check=True
    ).stdout
    assert "CREATE TABLE last_update (" in shown
    assert '"ixd__name__name" TEXT NOT NULL' in shown
    assert f'CREATE INDEX "ix__{graph.states[0].name}__name"' in shown


def test_an_iteration_reads_only_by_key_one_statement_per_read(
    db: tuple[Path, list[str]],
) -> None:
    _, traced = db
    selects = [s for s in traced if s.lstrip().upper().startswith("SELECT")]
    probes = [s for s in selects if " INDEXED BY " in s]
    data_reads = [s for s in selects if "last_update" not in s and s not in probes]
    assert data_reads, traced
    assert all(" WHERE " in s for s in data_reads), data_reads
    # join: the products at the line items' keys; group_reduce: the groups at their keys.
    # One statement each.
    assert len(data_reads) == 2, data_reads
    writes = [s for s in traced if s.lstrip().upper().startswith(("INSERT", "DELETE"))]
    deletes = [s for s in writes if s.startswith("DELETE")]
    # group_reduce read its groups, so it knows none of them reached 0 and asks no DELETE.
    # The join's right side and the receipts were not read, and only gain rows: one probe
    # of each one's negative-weight index finds no row an addition could settle, so they
    # are upserted without a DELETE.
    join_left, join_right, groups, receipts = (s.name for s in graph.states)
    assert deletes == []
    assert sorted(next(t for t in (join_right, receipts) if f'"{t}"' in s) for s in probes) == (
        sorted([join_right, receipts])
    )


def test_a_table_made_without_the_negative_weight_index_still_settles(tmp_path: Path) -> None:
    """A table created before the partial index existed is attached as it is: additions
    are then checked against stored negative weights by a DELETE, never by the probe."""
    path = tmp_path / "old.db"
    receipts = cache.spec.name
    with st.connection_sqlite(path) as conn:
        st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        conn.execute(f'DROP INDEX "ix__{receipts}__negative"')
    traced: list[str] = []
    with st.connection_sqlite(path) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=False)
        conn.set_trace_callback(traced.append)
        expected = settle_receipts(store)
        assert store.state(cache.spec).zset() == expected
    assert not [s for s in traced if " INDEXED BY " in s]
    assert [s for s in traced if s.startswith("DELETE") and f'"{receipts}"' in s]


def test_an_addition_settles_a_negative_weight_found_by_the_probe(tmp_path: Path) -> None:
    """With a negative weight stored, the probe answers yes, and the addition that brings
    that row to 0 deletes it rather than storing a 0."""
    traced: list[str] = []
    with st.connection_sqlite(tmp_path / "neg.db") as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        conn.set_trace_callback(traced.append)
        expected = settle_receipts(store)
        assert store.state(cache.spec).zset() == expected
        weights = sorted(c for (c,) in conn.execute(f'SELECT "c" FROM "{cache.spec.name}"'))
    assert weights == [1, 1, 3]
    assert [s for s in traced if " INDEXED BY " in s]


def test_a_group_total_replaced_is_one_update_of_its_row(db: tuple[Path, list[str]]) -> None:
    """A new line item in basket 1 replaces that group's row (same key, new total): one
    UPDATE of the stored row in place, no DELETE or INSERT on the groups' table."""
    path, _ = db
    groups = graph.states[2].name
    traced: list[str] = []
    with st.connection_sqlite(path) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=False)
        _, line_items = st.actions(store, graph)
        conn.set_trace_callback(traced.append)
        line_items.insert(LineItem(basket_id=1, product_name="tv", qty=10))
        conn.set_trace_callback(None)
        on_groups = [s.split()[0] for s in traced if f'"{groups}"' in s]
        assert on_groups == ["SELECT", "UPDATE"], on_groups
        assert sorted(store.state(cache.spec).zset().data.items()) == [
            (ReceiptItem(basket_id=1, total=53.0), 1),
            (ReceiptItem(basket_id=2, total=6.0), 1),
        ]
        (stored,) = conn.execute(
            f'SELECT "c" FROM "{groups}" WHERE "ixd__right_basket_id__right_basket_id" = 1'
        ).fetchall()
        assert stored == (1,)


def test_a_keyed_read_of_many_keys_is_one_statement(tmp_path: Path) -> None:
    with st.connection_sqlite(tmp_path / "keys.db") as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        products = store.state(graph.states[0])
        by_name = graph.states[0].indexes[0]
        store.begin(st.Time())
        products.add(st.ZSetPython({Product(name=f"p{i}", price=i): 1 for i in range(2000)}))
        store.commit(st.Time())
        traced: list[str] = []
        conn.set_trace_callback(traced.append)
        found = products.lookup(by_name, [f"p{i}" for i in range(0, 2000, 2)])
        weights = products.weights([Product(name=f"p{i}", price=i) for i in range(1000)])
    assert len(found) == 1000 and len(weights) == 1000
    assert len(traced) == 2


def test_many_keys_beyond_the_parameter_limit_still_work(tmp_path: Path) -> None:
    with st.connection_sqlite(tmp_path / "limit.db") as conn:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        products = store.state(graph.states[0])
        rows = {Product(name=f"p{i}", price=i): 1 for i in range(500)}
        store.begin(st.Time())
        products.add(st.ZSetPython(rows))
        store.commit(st.Time())
        assert products.weights(list(rows)) == rows
        found = products.lookup(graph.states[0].indexes[0], [f"p{i}" for i in range(500)])
    assert len(found) == 500


class Score(st.Data):
    player: str
    points: int


def loaded_scores(conn: sqlite3.Connection, spec: StateSpec) -> SQLState:
    """`spec`'s state in a store on `conn`, holding 50 scores for each of 4 players."""
    store = st.StoreSQLite.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
    state = store.state(spec)
    store.begin(st.Time())
    state.add(st.ZSetPython({Score(player=p, points=n): 1 for p in "abcd" for n in range(50)}))
    store.commit(st.Time())
    return state


def test_the_top_rows_of_many_groups_are_one_statement_of_a_limit_per_group(
    tmp_path: Path,
) -> None:
    """One statement for every group; each group's rows come from the first index, a
    search that stops at the LIMIT (no sort, no scan of the table)."""
    by_player = st.Index.pick(Score, lambda s: s.player)
    by_points = st.Index.pick(Score, lambda s: s.points, ascending=False)
    ordered = Ordered(by_points, by_player)
    spec = StateSpec("scores", ordered=(ordered,))
    with st.connection_sqlite(tmp_path / "scores.db") as conn:
        state = loaded_scores(conn, spec)
        state.add(st.ZSetPython({Score(player="a", points=49): -1}))
        traced: list[str] = []
        conn.set_trace_callback(traced.append)
        top = state.first(ordered, 2, ["a", "b", "z"])
        conn.set_trace_callback(None)
        (read,) = traced
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {read}")]
    assert top == {
        "a": [(Score(player="a", points=48), 1), (Score(player="a", points=47), 1)],
        "b": [(Score(player="b", points=49), 1), (Score(player="b", points=48), 1)],
    }
    assert "ROW_NUMBER" not in read and "LIMIT" in read
    first_index = f"ix__{spec.name}__first__"
    assert [s for s in plan if s.startswith("SEARCH r USING INDEX " + first_index)], plan
    assert not [s for s in plan if s.startswith("SCAN") and spec.name in s], plan
    assert not [s for s in plan if "TEMP B-TREE" in s or "AUTOMATIC" in s], plan


def test_the_top_rows_of_a_group_cost_the_same_however_large_the_group(
    tmp_path: Path,
) -> None:
    """The VM steps of a grouped top 2 do not grow with the group: a group of 5,000 rows
    costs what one of 50 does (a window over the group read all 5,000)."""
    by_player = st.Index.pick(Score, lambda s: s.player)
    by_points = st.Index.pick(Score, lambda s: s.points, ascending=False)
    ordered = Ordered(by_points, by_player)
    spec = StateSpec("scores", ordered=(ordered,))
    sizes = {"small": 50, "large": 5_000}
    with st.connection_sqlite(tmp_path / "scores.db") as conn:
        store = st.StoreSQLite.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        state = store.state(spec)
        store.begin(st.Time())
        rows = {Score(player=p, points=i): 1 for p, size in sizes.items() for i in range(size)}
        state.add(st.ZSetPython(rows))
        store.commit(st.Time())
        steps: dict[str, int] = {}
        for player in sizes:

            def count(player: str = player) -> int:
                steps[player] += 1
                return 0

            steps[player] = 0
            conn.set_progress_handler(count, 1)
            top = state.first(ordered, 2, [player])
            conn.set_progress_handler(None, 1)
            last = sizes[player] - 1
            expected = [Score(player=player, points=last - i) for i in range(2)]
            assert top == {player: [(row, 1) for row in expected]}
    assert steps["large"] < 2 * steps["small"], steps


def test_a_read_by_a_composite_key_searches_the_index_and_never_scans_the_table(
    tmp_path: Path,
) -> None:
    """SQLite answers `(a, b) IN (VALUES ...)` by reading every row of the table; the keys
    are joined to the index instead, so the read costs the keys, not the table."""
    by_both = st.Index.pick(Score, lambda s: (s.player, s.points))
    spec = StateSpec("scores", indexes=(by_both,))
    with st.connection_sqlite(tmp_path / "pairs.db") as conn:
        state = loaded_scores(conn, spec)
        traced: list[str] = []
        conn.set_trace_callback(traced.append)
        found = state.lookup(by_both, [("a", 1), ("b", 2), ("b", 2), ("z", 0)])
        conn.set_trace_callback(None)
        (read,) = traced
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {read}")]
    assert found == {
        ("a", 1): {Score(player="a", points=1): 1},
        ("b", 2): {Score(player="b", points=2): 1},
    }
    assert not [step for step in plan if step.startswith(f"SCAN {spec.name}")], plan
    assert [step for step in plan if "USING COVERING INDEX" in step], plan


def test_opening_a_file_another_connection_is_writing_waits_to_switch_it_to_wal(
    tmp_path: Path,
) -> None:
    """SQLite answers "database is locked" at once, without its busy timeout, to a switch
    to WAL while another connection holds the write lock (as when processes open a new
    file together): the connection waits for the lock instead."""
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    plain = sqlite3.connect(path, timeout=5, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain.execute("PRAGMA journal_mode=WAL")  # what SQLite does on its own
    plain.close()
    release = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        with st.connection_sqlite(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        release.join()
        writer.close()


class Tag(st.Data):
    tag_id: uuid.UUID
    label: bytes
    live: bool


class Hit(st.Data):
    tag_id: uuid.UUID
    n: int


class TagTotal(st.Data):
    label: bytes
    live: bool
    total: float


tag_totals = st.Cache[TagTotal]()


def to_tag_total(p: st.Pair[float, tuple[bytes, bool]]) -> TagTotal:
    return TagTotal(label=p.right[0], live=p.right[1], total=p.left)


def tag_query(tags: st.ZSet[Tag], hits: st.ZSet[Hit]) -> st.ZSet[TagTotal]:
    joined = st.join(
        tags,
        hits,
        on_left=st.Index.pick(Tag, lambda t: t.tag_id),
        on_right=st.Index.pick(Hit, lambda h: h.tag_id),
    )
    summed = st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair[Tag, Hit], lambda p: (p.left.label, p.left.live)),
        zero=float,
        pick_value=lambda p: float(p.right.n),
    )
    totals = st.map(summed, f=to_tag_total)
    _ = tag_totals[totals](
        lambda z: st.integrate_indexed(z, indexes=(st.Index.pick(TagTotal, lambda t: t.label),))
    )
    return totals


tag_graph = st.compile(tag_query)


class ParamRecorder:
    """The connection, recording the type of every parameter sent with a statement."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.types: set[type] = set()

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.types.update(map(type, params))
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        rows = list(rows)
        self.types.update(type(v) for row in rows for v in row)
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_blobs_are_bound_as_bytearray_which_sqlite3_binds_without_its_adapters(
    tmp_path: Path,
) -> None:
    """sqlite3 looks up an adapter for every bytes parameter (0.35 us each) but binds a
    bytearray straight away: identities, encoded rows and blob keys of every statement
    (upserts, updates in place, settling deletes, keyed reads) go out as bytearray, and
    the stored rows are the same."""
    ids = [uuid.UUID(int=i) for i in range(4)]
    tags = [Tag(tag_id=t, label=b"l%d" % (i % 2), live=i < 2) for i, t in enumerate(ids)]
    hits = [Hit(tag_id=t, n=n) for t in ids for n in range(3)]
    with st.connection_sqlite(tmp_path / "blobs.db") as conn:
        recorder = ParamRecorder(conn)
        store = st.StoreSQLite.from_graph(recorder, tag_graph, create_tables=True)
        tag_action, hit_action = st.actions(store, tag_graph)
        tag_action.insert(*tags)
        hit_action.insert(*hits)
        hit_action.remove(*hits[:4])
        hit_action.insert(Hit(tag_id=ids[3], n=7))
        got = sorted(tag_totals.zset(store).iter(), key=repr)
    memory = st.StorePython.from_graph(tag_graph)
    tag_action, hit_action = st.actions(memory, tag_graph)
    tag_action.insert(*tags)
    hit_action.insert(*hits)
    hit_action.remove(*hits[:4])
    hit_action.insert(Hit(tag_id=ids[3], n=7))
    assert got == sorted(tag_totals.zset(memory).iter(), key=repr)
    assert bytearray in recorder.types
    assert bytes not in recorder.types
    assert bool not in recorder.types
