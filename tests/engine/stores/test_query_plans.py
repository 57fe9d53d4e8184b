"""The query-plan audit (`query_plans.py`) catches every way SQLite reads a state table
whole, so the operator tests it runs in cannot pass for want of looking; and a read of
keys that no stored row can have sends SQLite nothing to scan."""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import replace

import pytest

from stepping_django import engine as st
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.sql import SQLState, fit
from tests.engine.operators.driver import Item, Tag, iterate
from tests.engine.stores.query_plans import (
    WHOLE_BY_DESIGN,
    full_reads,
    no_full_reads,
    state_tables,
)

on_item = st.Index.pick(Item, lambda i: i.key)  # int: a NOT NULL column
on_tag = st.Index.pick(Tag, lambda t: t.key)  # int | None: a nullable one


def tagged_and_counted(
    a: st.ZSet[Item], b: st.ZSet[Tag]
) -> tuple[st.ZSet[st.Pair[Item, Tag]], st.ZSet[int]]:
    return st.join(a, b, on_left=on_item, on_right=on_tag), st.count(a)


@pytest.fixture
def store() -> Iterator[tuple[st.Graph, st.StoreSQLite]]:
    """A join of items and tags and a count of the items, with 20 items stored."""
    graph = st.compile(tagged_and_counted)
    with st.connection_sqlite(":memory:") as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        items = st.ZSetPython({Item(key=k, value=k % 4): 1 for k in range(20)})
        st.iteration(store, graph, (items, st.ZSetPython()))
        yield graph, store


def table_names(graph: st.Graph) -> dict[str, str]:
    """The join's left and right tables and the count's, as `{l}`, `{r}` and `{total}`."""
    left, right, total = (s.name for s in graph.states)
    return {"l": left, "r": right, "total": total}


def tables_of(store: type[st.StoreSQLite], graph: st.Graph) -> dict[str, str | None]:
    """`state_tables` of a fresh `store` of `graph`."""
    with st.connection_sqlite(":memory:") as conn:
        return state_tables(store.from_graph(conn, graph, create_tables=True), graph)


@pytest.mark.parametrize(
    ("statement", "table", "step"),
    [
        ('SELECT "data" FROM "{l}" WHERE "c" = 2', "l", "SCAN {l}"),
        ('DELETE FROM "{l}" WHERE "c" = 5', "l", "SCAN {l}"),
        ('WITH x AS (SELECT "data" FROM "{l}") SELECT * FROM x', "l", "SCAN {l}"),
        (
            'SELECT k."data" FROM (VALUES (1), (2)) AS v '
            'CROSS JOIN "{l}" AS k ON k."c" = v.column1',
            "l",
            "SCAN k",
        ),
        ('SELECT "ixd__key__key" FROM "{l}" ORDER BY 1', "l", "SCAN {l} USING COVERING INDEX"),
        ('SELECT "data" FROM "{l}" WHERE "ixd__key__key" > 0', "l", "SEARCH {l} USING INDEX"),
        (
            'SELECT a."data" FROM "{l}" AS a JOIN "{r}" AS b ON a."c" = b."c"',
            "r",
            "AUTOMATIC",
        ),
        ('SELECT "identity", "data", "c" FROM "{l}"', "l", "SCAN {l}"),
        (  # how a composite key was once read
            'SELECT "data" FROM "{l}" WHERE ("ixd__key__key", "c") IN (VALUES (1, 1), (2, 1))',
            "l",
            "SCAN {l}",
        ),
    ],
)
def test_the_audit_reports_each_way_of_reading_a_state_table_whole(
    store: tuple[st.Graph, st.StoreSQLite], statement: str, table: str, step: str
) -> None:
    graph, sqlite = store
    names = table_names(graph)
    found = full_reads(sqlite.conn, statement.format(**names), state_tables(sqlite, graph))
    assert [r for r in found if r.table == names[table] and step.format(**names) in r.step], found


def test_the_audit_reports_a_table_it_cannot_tell_from_a_state(
    store: tuple[st.Graph, st.StoreSQLite],
) -> None:
    graph, sqlite = store
    sqlite.conn.execute("CREATE TABLE other (x)")
    (found,) = full_reads(sqlite.conn, "SELECT x FROM other", state_tables(sqlite, graph))
    assert found.table == "other (not known to the audit)"


@pytest.mark.parametrize(
    "statement",
    [
        """SELECT "identity", "c" FROM "{l}" WHERE "identity" IN (x'01', x'02')""",
        'SELECT "data" FROM "{l}" WHERE "ixd__key__key" IN (1, 2)',
        'SELECT "data" FROM "{r}" WHERE ("ixd__key__key" IS NULL) OR ("ixd__key__key" IN (1))',
        'SELECT 1 FROM "{l}" INDEXED BY "{negative}" WHERE "c" < 0 LIMIT 1',
        'SELECT "identity", "data", "c" FROM "{total}"',
        "UPDATE last_update SET t = MAX(t, 3) WHERE table_name IN ('{l}')",
        'SELECT k."data" FROM (VALUES (1), (2)) AS v CROSS JOIN "{l}" AS k '
        'ON k."ixd__key__key" = v.column1',
    ],
)
def test_the_audit_passes_reads_by_key_and_the_bounded_whole_reads(
    store: tuple[st.Graph, st.StoreSQLite], statement: str
) -> None:
    """Keyed reads; the probe of the partial index of negative weights (only rows stored
    below 0); a whole read of the count's one-row total; `last_update`."""
    graph, sqlite = store
    names = table_names(graph)
    negative = fit(f"ix__{names['l']}__negative")
    sql = statement.format(negative=negative, **names)
    assert full_reads(sqlite.conn, sql, state_tables(sqlite, graph)) == []


def test_a_whole_read_by_design_is_per_ungrouped_first_n_not_per_group() -> None:
    """An ungrouped first_n reads its previous top n whole; per group, it must look up
    the previous tops of the touched groups instead."""

    def firsts(a: st.ZSet[Item]) -> st.ZSet[Item]:
        return st.first_n(a, index=st.Index.pick(Item, lambda i: i.value), n=2)

    def firsts_per_key(a: st.ZSet[Item]) -> st.ZSet[st.Pair[Item, int]]:
        return st.flatten(st.per_group[st.group(a, by=on_item)](firsts))

    ungrouped, grouped = (
        tables_of(st.StoreSQLite, st.compile(q)) for q in (firsts, firsts_per_key)
    )
    assert sorted(r is not None for r in ungrouped.values()) == [False, True]
    assert all(r is None for r in grouped.values())


def test_the_audit_knows_each_state_by_the_table_the_store_keeps_it_in() -> None:
    """As a tagged Django store does (stepping_django/store.py), under another name."""

    class Tagged(st.StoreSQLite):
        def state(self, spec: StateSpec) -> SQLState:
            return super().state(replace(spec, name=f"tagged_{spec.name}"))

    graph = st.compile(tagged_and_counted)
    left, right, total = (f"tagged_{s.name}" for s in graph.states)
    assert tables_of(Tagged, graph) == {
        left: None,
        right: None,
        total: WHOLE_BY_DESIGN[("reduce", "total")],
    }


def test_an_iteration_that_scans_fails_naming_the_table_the_statement_and_its_plan(
    store: tuple[st.Graph, st.StoreSQLite],
) -> None:
    graph, sqlite = store
    left = table_names(graph)["l"]
    scan = f'SELECT "data" FROM "{left}" WHERE "c" = 2'
    with pytest.raises(AssertionError) as failed, no_full_reads(sqlite, graph):
        sqlite.conn.execute(scan)
    assert f"SQLite reads table {left} whole (SCAN {left}) for:\n  {scan}\n" in str(failed.value)
    assert f"  plan:\n    SCAN {left}" in str(failed.value)


def test_a_failed_iteration_raises_its_own_error_not_the_audit(
    store: tuple[st.Graph, st.StoreSQLite],
) -> None:
    graph, sqlite = store
    with pytest.raises(RuntimeError, match="the iteration failed"), no_full_reads(sqlite, graph):
        sqlite.conn.execute(f'SELECT "data" FROM "{table_names(graph)["l"]}"')
        raise RuntimeError("the iteration failed")


@pytest.mark.parametrize(
    "tags",
    [
        {Tag(key=None, label="a"): 1},
        {Tag(key=None, label="a"): 1, Tag(key=3, label="b"): 1},
    ],
)
def test_a_join_looking_up_a_none_key_on_a_not_null_column_reads_no_table_whole(
    store: tuple[st.Graph, st.StoreSQLite], tags: dict[Tag, int]
) -> None:
    """A tag without a key matches no item, whose key column is NOT NULL. Asked for
    `key IS NULL OR key IN (...)` there, SQLite reads every item (and it plans a scan for
    `key IS NULL` alone), so such keys are not asked at all."""
    graph, sqlite = store
    joined, count = iterate(sqlite, graph, (st.ZSetPython(), st.ZSetPython(tags)), st.Time())
    assert joined == st.ZSetPython(
        {st.Pair(Item(key=t.key, value=t.key % 4), t): 1 for t in tags if t.key is not None}
    )
    assert count == st.ZSetPython()


def test_a_read_of_keys_no_row_can_have_sends_no_statement(
    store: tuple[st.Graph, st.StoreSQLite],
) -> None:
    """Neither a lookup nor the first rows of groups asks SQLite for a None key of a NOT
    NULL column."""
    _, sqlite = store
    by_value = st.Index.pick(Item, lambda i: i.value)
    ordered = Ordered(by_value, on_item)
    spec = StateSpec("st_items", indexes=(on_item,), ordered=(ordered,))
    states = types.SimpleNamespace(states=(spec,))
    state = st.StoreSQLite.from_graph(sqlite.conn, states, True).state(spec)
    traced: list[str] = []
    sqlite.conn.set_trace_callback(traced.append)
    assert state.lookup(on_item, [None]) == {}
    assert state.first(ordered, 2, [None]) == {}
    sqlite.conn.set_trace_callback(None)
    assert traced == []
