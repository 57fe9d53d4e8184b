"""Behaviour both SQL stores share: attaching, rollback, waiting for frontiers, quoting."""

from __future__ import annotations

import threading
import time
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.serialize import identity
from stepping_django.engine.stores import sql, sqlite
from stepping_django.engine.stores.base import Ordered, StateSpec
from tests.conftest import needs_speedups
from tests.engine.seed_query import LineItem, Product, cache, graph
from tests.engine.stores.conftest import Backend, raw_connect, settle_receipts


class Item(st.Data):
    key: int
    label: str


def broken_label(item: Item) -> Item:
    """Fails on one label: a user function that raises inside an iteration."""
    if item.label == "boom":
        raise ValueError("boom")
    return item


def checked(items: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, Item]]:
    distinct = st.distinct(items)
    joined = st.join(
        distinct,
        st.map(distinct, f=broken_label),
        on_left=st.Index.pick(Item, lambda i: i.key),
        on_right=st.Index.pick(Item, lambda i: i.key),
    )
    return joined


checked_graph = st.compile(checked)


def test_attaching_to_missing_tables_fails_at_once_naming_the_table(backend: Backend) -> None:
    with backend.connect() as conn, pytest.raises(st.MissingTable, match="last_update"):
        backend.store.from_graph(conn, graph, create_tables=False)
    with backend.connect() as conn:
        backend.store.from_graph(conn, graph, create_tables=True)
    dropped = graph.states[2].name
    with backend.connect() as conn:
        conn.execute(f'DROP TABLE "{dropped}"')
    with backend.connect() as conn, pytest.raises(st.MissingTable, match=dropped):
        backend.store.from_graph(conn, graph, create_tables=False)


def test_tables_start_at_time_zero(backend: Backend) -> None:
    with backend.connect() as conn:
        backend.store.from_graph(conn, graph, create_tables=True)
    times = backend.dump()["last_update"]
    assert sorted(times) == sorted((s.name, 0) for s in graph.states)


def test_a_failing_iteration_leaves_every_table_as_it_was_and_can_be_retried(
    backend: Backend,
) -> None:
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, checked_graph, create_tables=True)
        (items,) = st.actions(store, checked_graph)
        items.insert(Item(key=1, label="a"), time=st.Time(input_time=1, frontier=0))
    before = backend.dump()
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, checked_graph, create_tables=False)
        (items,) = st.actions(store, checked_graph)
        again = st.Time(input_time=2, frontier=1)
        with pytest.raises(ValueError, match="boom"):
            items.insert(Item(key=1, label="b"), Item(key=2, label="boom"), time=again)
        assert backend.dump() == before
        (joined,) = items.insert(Item(key=1, label="b"), time=again)
    assert len(joined) == 3
    after = dict(backend.dump()["last_update"])
    assert set(after.values()) == {2}


def test_a_failing_write_rolls_back_the_tables_already_written(backend: Backend) -> None:
    """The key 2**70 does not fit the join's BIGINT column: the distinct table was already
    written in the same transaction, and must be rolled back with the rest."""
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, checked_graph, create_tables=True)
        (items,) = st.actions(store, checked_graph)
        items.insert(Item(key=1, label="a"), time=st.Time(input_time=1, frontier=0))
    before = backend.dump()
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, checked_graph, create_tables=False)
        (items,) = st.actions(store, checked_graph)
        with pytest.raises(Exception, match="(?i)too large|out of range"):
            items.insert(Item(key=2**70, label="x"), time=st.Time(input_time=2, frontier=1))
        assert backend.dump() == before
        items.insert(Item(key=3, label="x"), time=st.Time(input_time=2, frontier=1))


def test_waiting_past_max_sleep_secs_names_table_and_times(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st, "MAX_SLEEP_SECS", 0.3)
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=True)
        (products, _) = st.actions(store, graph)
        started = time.monotonic()
        with pytest.raises(st.FrontierTimeout) as raised:
            products.insert(Product(name="tv", price=3), time=st.Time(input_time=5, frontier=4))
        waited = time.monotonic() - started
    assert 0.3 <= waited < 3
    message = str(raised.value)
    assert graph.states[0].name in message and "time 4" in message and "is 0" in message


def test_a_timed_iteration_records_its_time_on_every_table(backend: Backend) -> None:
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=True)
        (products, _) = st.actions(store, graph)
        products.insert(Product(name="tv", price=3), time=st.Time(input_time=1, frontier=0))
    assert {t for _, t in backend.dump()["last_update"]} == {1}


def test_flush_none_writes_nothing_until_the_caller_commits(backend: Backend) -> None:
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=True)
        (products, line_items) = st.actions(store, graph)
        later = st.Time(input_time=1, frontier=0, flush_every_set=None)
        products.insert(Product(name="tv", price=3), time=later)
        line_items.insert(LineItem(basket_id=1, product_name="tv", qty=2), time=later)
        assert [str(r) for r, _ in cache.zset(store).iter()] == ["Basket id: 1 total: $6.0"]
        assert all(rows == [] for name, rows in backend.dump().items() if name != "last_update")
        store.commit(st.Time(input_time=1, frontier=0))
    assert {t for _, t in backend.dump()["last_update"]} == {1}
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=False)
        assert [str(r) for r, _ in cache.zset(store).iter()] == ["Basket id: 1 total: $6.0"]


HOSTILE = 'we"ird %s ?; DROP TABLE last_update --'


def test_hostile_identifiers_are_quoted(backend: Backend) -> None:
    key = st.Index(('a"b %s', "c;d"), (int, str), (True, False), lambda r: r, True)
    spec = StateSpec(HOSTILE, indexes=(key,), ordered=(Ordered(key),))
    fake_graph = types.SimpleNamespace(states=(spec,))
    rows: dict[Any, int] = {(1, "x"): 1, (1, "y"): 2, (2, "'); --"): 1}
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, fake_graph, create_tables=True)
        state = store.state(spec)
        store.begin(st.Time())
        state.add(st.ZSetPython(rows))
        store.commit(st.Time(input_time=1))
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, fake_graph, create_tables=False)
        state = store.state(spec)
        assert state.zset() == st.ZSetPython(rows)
        assert state.lookup(key, [(1, "y"), (2, "'); --")]) == {
            (1, "y"): {(1, "y"): 2},
            (2, "'); --"): {(2, "'); --"): 1},
        }
        assert state.first(Ordered(key), 2) == {None: [((1, "y"), 2)]}
    assert dict(backend.dump()["last_update"]) == {HOSTILE: 1}


def test_processes_may_create_the_same_tables_at_once(backend: Backend) -> None:
    """Every worker of a freshly deployed service may start with create_tables=True."""
    errors: list[BaseException] = []

    def create() -> None:
        try:
            with raw_connect(backend) as conn:
                backend.store.from_graph(conn, graph, create_tables=True)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(backend.dump()["last_update"]) == sorted((s.name, 0) for s in graph.states)


def test_a_failing_pipelined_iteration_keeps_what_it_committed(backend: Backend) -> None:
    """flush_every_set=True is not atomic, as documented: the vertex before the failure
    committed its table (and its time), the tables after it did not."""
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, checked_graph, create_tables=True)
        (items,) = st.actions(store, checked_graph)
        with pytest.raises(ValueError, match="boom"):
            items.insert(Item(key=2, label="boom"), time=st.Time(1, 0, flush_every_set=True))
    times = dict(backend.dump()["last_update"])
    distinct_table = checked_graph.states[0].name
    assert times.pop(distinct_table) == 1
    assert set(times.values()) == {0}
    assert len(backend.dump()[distinct_table]) == 1


BY_KEY = st.Index.pick(Item, lambda i: i.key)
CACHED = StateSpec("st_cached_reads", indexes=(BY_KEY,))


def test_a_cache_read_by_index_decodes_only_new_rows_and_stays_one_snapshot(
    backend: Backend,
) -> None:
    """A read by index asks for identities first and decodes only rows it has not seen;
    a row deleted between that and fetching its data makes it read again in one
    statement, so the answer is never a mix of two moments."""
    rows = [Item(key=1, label=label) for label in "abc"]
    with backend.connect() as writer_conn, backend.connect() as reader_conn:
        writer = backend.store.from_graph(
            writer_conn, types.SimpleNamespace(states=(CACHED,)), True
        )
        written = writer.state(CACHED)
        writer.begin(st.Time())
        written.add(st.ZSetPython({r: 1 for r in rows}))
        writer.commit(st.Time())
        reader = backend.store.from_graph(
            reader_conn, types.SimpleNamespace(states=(CACHED,)), False
        )
        state = reader.state(CACHED)
        statements: list[str] = []
        query = state._query

        def traced(sql: str, params: Any) -> Any:
            found = query(sql, params)
            statements.append(sql)
            if len(statements) == 1 and not deleted:  # another process deletes a row now
                deleted.append(rows[0])
                writer.begin(st.Time())
                written.add(st.ZSetPython({rows[0]: -1}))
                writer.commit(st.Time())
            return found

        deleted: list[Item] = []
        state._query = traced  # type: ignore[method-assign]
        got = state.by_index(BY_KEY, [1])
        assert {row for _, row, _ in got} == set(rows[1:])
        assert len(statements) == 3 and '"data"' in statements[-1]
        statements.clear()
        again = state.by_index(BY_KEY, [1])
        assert again == got and len(statements) == 1 and '"data"' not in statements[0]


def test_rows_of_unknown_weight_settle_deleted_at_zero_and_summed_otherwise(
    backend: Backend,
) -> None:
    """A retraction of a stored row deletes it, a retraction of an absent row stores a
    negative weight that a later addition deletes, and other changes add up; no row is
    left at weight 0."""
    with backend.connect() as conn:
        expected = settle_receipts(backend.store.from_graph(conn, graph, create_tables=True))
    stored = backend.dump()[cache.spec.name]
    assert sorted(row[-1] for row in stored) == [1, 1, 3]
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, graph, create_tables=False)
        assert store.state(cache.spec).zset() == expected


pending_rows = hs.dictionaries(
    hs.tuples(hs.integers(0, 4), hs.integers(0, 3)), hs.integers(-2, 2).filter(bool), max_size=12
)


def key_of(row: tuple[int, int]) -> int:
    return row[0]


@given(
    pending_rows,
    pending_rows,
    hs.lists(hs.integers(0, 6), max_size=6),
    hs.dictionaries(hs.tuples(hs.integers(0, 4), hs.integers(0, 3)), hs.integers(-2, 2)),
    hs.booleans(),
)
def test_filing_and_noting_keys_in_c_give_what_python_gives(
    first: dict[Any, int],
    then: dict[Any, int],
    keys: list[int],
    known: dict[Any, int],
    pairing: bool,
) -> None:
    """A state's pending changes filed by key, then the looked-up keys noted: the same
    buckets, the same rows recorded as stored at 0 and the same in-place pairs."""
    needs_speedups()
    filed = []
    for file in (sql._file_py, sql.speedups.file_weights):
        buckets: dict[Any, dict[Any, int]] = {}
        file(buckets, key_of, first)
        file(buckets, key_of, then)
        filed.append([(k, list(b.items())) for k, b in buckets.items()])
    assert filed[0] == filed[1]
    noted = []
    for note in (sql._note_keys_py, sql.speedups.note_keys):
        buckets = {}
        sql._file_py(buckets, key_of, first)
        known_now, replaced = dict(known), []
        note(keys, buckets, known_now, pairing, replaced)
        noted.append((list(known_now.items()), replaced))
    assert noted[0] == noted[1]


@given(
    pending_rows,
    hs.dictionaries(hs.tuples(hs.integers(0, 4), hs.integers(0, 3)), hs.integers(-2, 2)),
)
def test_a_flushs_rows_are_sorted_and_settled_in_c_as_in_python(
    pending: dict[Any, int], known: dict[Any, int]
) -> None:
    """The pending rows split by what is known of their stored weights; then, for the rows
    not known, their identities by weight change and the write parameters of those a
    settling delete did not take: the same lists, dicts and order from C and Python."""
    speedups = needs_speedups()
    split = speedups.split_pending(pending, known)
    assert split == sql._split_pending_py(pending, known)
    unsure = split[1]
    ids, by_delta = speedups.ids_by_delta(unsure, identity)
    py_ids, py_by_delta = sqlite._ids_by_delta_py(unsure, identity)
    assert ids == py_ids and list(by_delta.items()) == list(py_by_delta.items())
    gone = set(ids[::2])

    def write_row(row: Any, rid: bytes, c: int) -> tuple[Any, ...]:
        return (rid, row, c)

    assert speedups.rows_left(write_row, ids, unsure, gone) == sqlite._rows_left_py(
        write_row, ids, unsure, gone
    )
