"""Bad input to the engine: every kind is refused with an error naming what is wrong, and
leaves the store as it was.

- A hypothesis fuzz draws bad declarations and bad rows from `KINDS` (each a strategy of
  a thunk, the exception it must raise and the words the message must contain: the class,
  field or operator at fault). `BAD_INPUTS_TRIED` counts the examples run (for
  benchmarks/RESULTS.md).
- A store attached with `create_tables=False` to a database without its tables raises
  `st.MissingTable` naming the table (SQLite and Postgres).
- An iteration whose frontier is never reached raises `st.FrontierTimeout` after
  MAX_SLEEP_SECS, naming the table and both times, and writes nothing.
(A user function raising on some rows at run time: tests/engine/test_rollback.py.)
"""

from __future__ import annotations

import keyword
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from tests.engine.stores.postgres_schemas import Schemas, require_postgres

#: Examples the fuzz test ran in this process (read by the RESULTS.md report).
BAD_INPUTS_TRIED: dict[str, int] = {}


class Item(st.Data):
    key: str
    value: int


class Other(st.Data):
    name: str


BY_KEY = st.Index.pick(Item, lambda i: i.key)

field_names = hs.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and s not in ("key", "value", "left", "right")
)


@dataclass
class Bad:
    kind: str
    thunk: Callable[[], Any]
    error: type[BaseException]
    words: tuple[str, ...]


def _compile(body: Callable[[Any], Any], annotation: Any = st.ZSet[Item]) -> Callable[[], Any]:
    def query(a: Any) -> Any:
        return body(a)

    query.__annotations__ = {"a": annotation}
    return lambda: st.compile(query)


# -- the kinds of bad input ---------------------------------------------------------------


@hs.composite
def mutable_field_type(draw: hs.DrawFn) -> Bad:
    field = draw(field_names)
    tp = draw(hs.sampled_from([list, dict, set, bytearray, list[int], dict[str, int], set[str]]))
    cls_name = "Bad" + draw(hs.from_regex(r"[A-Z][a-z]{0,6}", fullmatch=True))
    return Bad(
        "row field of a mutable type",
        lambda: type(cls_name, (st.Data,), {"__annotations__": {field: tp}}),
        st.UnsupportedType,
        (cls_name, field),
    )


@hs.composite
def object_field_type(draw: hs.DrawFn) -> Bad:
    field = draw(field_names)
    custom = type("Custom" + draw(hs.from_regex(r"[A-Z][a-z]{0,4}", fullmatch=True)), (), {})
    return Bad(
        "row field of an arbitrary class",
        lambda: type("BadObj", (st.Data,), {"__annotations__": {field: custom}}),
        st.UnsupportedType,
        ("BadObj", field),
    )


@hs.composite
def mutable_value_in_zset(draw: hs.DrawFn) -> Bad:
    value = draw(hs.sampled_from([[1], {"a": 1}, {1, 2}, bytearray(b"x")]))
    return Bad(
        "mutable value of an object field entering a Z-set",
        lambda: st.ZSetPython({Loose(key="k", blob=value): 1}),
        st.UnsupportedType,
        ("Loose", "blob"),
    )


class Loose(st.Data):
    key: str
    blob: object


@hs.composite
def pick_unknown_field(draw: hs.DrawFn) -> Bad:
    field = draw(field_names)
    return Bad(
        "Index.pick of a field the class lacks",
        lambda: st.Index.pick(Item, lambda i: getattr(i, field)),
        TypeError,
        ("Item", field),
    )


@hs.composite
def pick_computed_key(draw: hs.DrawFn) -> Bad:
    n = draw(hs.integers(-5, 5))
    f = draw(
        hs.sampled_from(
            [
                lambda i: i.value + n,
                lambda i: i.key.upper(),
                lambda i: -i.value,
                lambda i: i.value * n,
                lambda i: i.key < "m",
            ]
        )
    )
    return Bad("Index.pick of a computed key", lambda: st.Index.pick(Item, f), TypeError, ("Item",))


@hs.composite
def pick_constant(draw: hs.DrawFn) -> Bad:
    value = draw(hs.one_of(hs.integers(), hs.text(max_size=5), hs.none(), hs.booleans()))
    return Bad(
        "Index.pick of a constant",
        lambda: st.Index.pick(Item, lambda i: value),
        TypeError,
        ("Index.pick", "attributes"),
    )


@hs.composite
def ascending_flags(draw: hs.DrawFn) -> Bad:
    flags = tuple(draw(hs.lists(hs.booleans(), max_size=4).filter(lambda fs: len(fs) != 2)))
    return Bad(
        "Index.pick with the wrong number of ascending flags",
        lambda: st.Index.pick(Item, lambda i: (i.key, i.value), ascending=flags),
        ValueError,
        ("2 key parts", f"{len(flags)} ascending"),
    )


@hs.composite
def join_arity(draw: hs.DrawFn) -> Bad:
    left = draw(hs.integers(1, 2))
    right = 3 - left
    picks = {1: BY_KEY, 2: st.Index.pick(Item, lambda i: (i.key, i.value))}
    return Bad(
        "join with keys of different arity",
        _compile(lambda a: st.join(a, a, on_left=picks[left], on_right=picks[right])),
        st.CompileError,
        ("join", f"{left} key parts", f"has {right}"),
    )


@hs.composite
def non_stream_output(draw: hs.DrawFn) -> Bad:
    value = draw(
        hs.one_of(
            hs.none(),
            hs.integers(),
            hs.text(max_size=5),
            hs.just(st.ZSetPython()),
            hs.lists(hs.integers(), max_size=2),
        )
    )
    return Bad(
        "a query returning something other than a stream",
        _compile(lambda a: value),
        st.CompileError,
        ("output 0", type(value).__name__),
    )


@hs.composite
def ungrouped_per_group(draw: hs.DrawFn) -> Bad:
    which = draw(hs.sampled_from(["per_group", "flatten"]))
    body = (lambda a: st.per_group[a](lambda g: g)) if which == "per_group" else st.flatten
    return Bad(
        f"{which} of an ungrouped stream", _compile(body), st.CompileError, (which, "grouped")
    )


@hs.composite
def grouped_twice(draw: hs.DrawFn) -> Bad:
    return Bad(
        "group of a grouped stream / add of grouped and ungrouped",
        _compile(
            draw(
                hs.sampled_from(
                    [
                        lambda a: st.group(st.group(a, by=BY_KEY), by=BY_KEY),
                        lambda a: st.add(a, st.group(a, by=BY_KEY)),
                    ]
                )
            )
        ),
        st.CompileError,
        ("group",),
    )


@hs.composite
def unknown_annotation(draw: hs.DrawFn) -> Bad:
    name = draw(hs.from_regex(r"Nope[A-Z][a-z]{0,6}", fullmatch=True))
    return Bad(
        "a parameter annotated with an unknown class",
        _compile(lambda a: a, annotation=f"st.ZSet[{name}]"),
        st.CompileError,
        ("cannot read its annotations", name),
    )


@hs.composite
def mixed_stream_and_concrete(draw: hs.DrawFn) -> Bad:
    rows = draw(hs.lists(hs.text(max_size=3), max_size=3))
    concrete = st.ZSetPython({Item(key=k, value=1): 1 for k in rows})
    return Bad(
        "an operator given a stream and a concrete Z-set",
        _compile(lambda a: st.add(a, concrete)),
        st.CompileError,
        ("stream", "concrete"),
    )


@hs.composite
def first_n_bad_n(draw: hs.DrawFn) -> Bad:
    n = draw(hs.one_of(hs.integers(max_value=-1), hs.text(max_size=2), hs.floats(0, 5)))
    return Bad(
        "first_n with n not an int >= 0",
        _compile(lambda a: st.first_n(a, index=BY_KEY, n=n)),
        ValueError,
        ("first_n", repr(n)),
    )


@hs.composite
def reading_rows_while_compiling(draw: hs.DrawFn) -> Bad:
    return Bad(
        "reading a stream's rows while compiling",
        _compile(draw(hs.sampled_from([lambda a: a.iter(), lambda a: list(a.iter())]))),
        st.CompileError,
        (),
    )


def _no_parameters() -> Any:
    return None


def no_parameters() -> hs.SearchStrategy[Bad]:
    return hs.just(
        Bad("a query without inputs", lambda: st.compile(_no_parameters), st.CompileError,
            ("parameter",))
    )  # fmt: skip


@hs.composite
def wrong_number_of_inputs(draw: hs.DrawFn) -> Bad:
    n = draw(hs.integers(0, 4).filter(lambda n: n != 1))

    def run() -> Any:
        graph = st.compile(identity_query)
        return st.iteration(st.StorePython.from_graph(graph), graph, [st.ZSetPython()] * n)

    return Bad("an iteration given the wrong number of inputs", run, TypeError,
               ("expected 1 inputs", f"got {n}"))  # fmt: skip


def identity_query(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.map(a, f=lambda i: i)


@hs.composite
def row_missing_field(draw: hs.DrawFn) -> Bad:
    kwargs = draw(hs.sampled_from([{"key": "a"}, {"value": 1}, {}]))
    return Bad("a row missing a field", lambda: Item(**kwargs), TypeError, ("Item",))


KINDS = [
    mutable_field_type(),
    object_field_type(),
    mutable_value_in_zset(),
    pick_unknown_field(),
    pick_computed_key(),
    pick_constant(),
    ascending_flags(),
    join_arity(),
    non_stream_output(),
    ungrouped_per_group(),
    grouped_twice(),
    unknown_annotation(),
    mixed_stream_and_concrete(),
    first_n_bad_n(),
    reading_rows_while_compiling(),
    no_parameters(),
    wrong_number_of_inputs(),
    row_missing_field(),
]


@given(bad=hs.one_of(*KINDS))
def test_bad_declarations_and_rows_are_refused_naming_what_is_wrong(bad: Bad) -> None:
    BAD_INPUTS_TRIED[bad.kind] = BAD_INPUTS_TRIED.get(bad.kind, 0) + 1
    with pytest.raises(bad.error) as raised:
        bad.thunk()
    message = str(raised.value)
    for word in bad.words:
        assert word in message, f"{bad.kind}: {word!r} not in {message!r}"


def test_the_fuzz_tries_every_kind() -> None:
    # Every kind is drawn at least once by hypothesis in a run of the test above; this
    # test runs after it (file order) and checks the count so a dead kind is noticed.
    if not BAD_INPUTS_TRIED:
        pytest.skip("run together with the fuzz test above")
    assert len(BAD_INPUTS_TRIED) >= 10, sorted(BAD_INPUTS_TRIED)
    print(f"\nBAD_INPUTS tried={sum(BAD_INPUTS_TRIED.values())} kinds={len(BAD_INPUTS_TRIED)}")


# -- stores: attaching to missing tables, frontier time-outs -----------------------------


def counts(a: st.ZSet[Item]) -> st.ZSet[st.Pair[int, str]]:
    return st.group_reduce_flatten(a, by=BY_KEY, zero=int, pick_value=lambda i: i.value)


def test_attaching_to_a_sqlite_database_without_the_tables_names_the_table(tmp_path: Any) -> None:
    graph = st.compile(counts)
    path = str(tmp_path / "db")
    with st.connection_sqlite(path) as conn:
        with pytest.raises(st.MissingTable, match="last_update"):
            st.StoreSQLite.from_graph(conn, graph, create_tables=False)
        # Another graph's tables (and last_update) exist, this graph's do not.
        st.StoreSQLite.from_graph(conn, st.compile(identity_query), create_tables=True)
        with pytest.raises(st.MissingTable) as raised:
            st.StoreSQLite.from_graph(conn, graph, create_tables=False)
        assert any(s.name in str(raised.value) for s in graph.states), raised.value
    names = {n for (n,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert not {s.name for s in graph.states} & names  # the failed attaches created nothing


@pytest.mark.postgres
def test_attaching_to_a_postgres_schema_without_the_tables_names_the_table() -> None:
    require_postgres()
    schemas = Schemas()
    try:
        graph = st.compile(counts)
        with psycopg.connect(schemas.new_url()) as conn:
            with pytest.raises(st.MissingTable, match="last_update"):
                st.StorePostgres.from_graph(conn, graph, create_tables=False)
            conn.rollback()
            st.StorePostgres.from_graph(conn, st.compile(identity_query), create_tables=True)
            conn.commit()
            with pytest.raises(st.MissingTable) as raised:
                st.StorePostgres.from_graph(conn, graph, create_tables=False)
            assert any(s.name in str(raised.value) for s in graph.states), raised.value
    finally:
        schemas.close()


def test_a_frontier_never_reached_times_out_naming_table_and_times(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st, "MAX_SLEEP_SECS", 0.05)
    graph = st.compile(counts)
    with st.connection_sqlite(str(tmp_path / "db")) as conn:
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        (action,) = st.actions(store, graph)
        action.insert(Item(key="a", value=1), time=st.Time(1, 0))
        before = conn.execute("SELECT table_name, t FROM last_update ORDER BY 1").fetchall()
        with pytest.raises(st.FrontierTimeout) as raised:
            action.insert(Item(key="a", value=2), time=st.Time(5, 4))
        message = str(raised.value)
        assert "did not reach time 4" in message and "MAX_SLEEP_SECS" in message
        assert "last_update.t is 1" in message
        assert any(s.name in message for s in graph.states)
        # Nothing of the timed-out change was written; the next time in order applies.
        assert conn.execute("SELECT table_name, t FROM last_update ORDER BY 1").fetchall() == before
        (out,) = action.insert(Item(key="a", value=2), time=st.Time(2, 1))
        assert out == st.ZSetPython({st.Pair(1, "a"): -1, st.Pair(3, "a"): 1})
