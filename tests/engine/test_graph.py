"""Compiling by tracing: what a graph holds, shared vertices, and queries it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import Item, Tag

by_key = st.Index.pick(Item, lambda i: i.key)
tag_key = st.Index.pick(Tag, lambda t: t.key)


def two_distincts(a: st.ZSet[Item]) -> tuple[Any, Any]:
    """The same computation written twice is one vertex."""
    return st.distinct(a), st.distinct(a)


def test_the_same_computation_twice_is_one_vertex_with_one_table() -> None:
    graph = st.compile(two_distincts)
    assert graph.outputs[0] is graph.outputs[1]
    assert len(graph.states) == 1


def test_a_graph_lists_inputs_outputs_and_one_table_per_state() -> None:
    def query(a: st.ZSet[Item], b: st.ZSet[Tag]) -> st.ZSet[Any]:
        return st.join(a, b, on_left=by_key, on_right=tag_key)

    graph = st.compile(query)
    assert [v.kind for v in graph.inputs] == ["input", "input"]
    assert graph.input_types == (Item, Tag)
    assert [v.kind for v in graph.outputs] == ["join"]
    assert len(graph.states) == 2 and len({s.name for s in graph.states}) == 2
    assert [v.kind for v in graph.delay_vertices] == ["join"]


def test_unused_branches_are_left_out_but_caches_are_kept() -> None:
    cache = st.Cache[Item]()

    def query(a: st.ZSet[Item]) -> st.ZSet[Item]:
        st.distinct(a)  # built, never used: not in the graph
        _ = cache[a](lambda z: st.integrate(z))
        return st.map(a, f=lambda i: i)

    graph = st.compile(query)
    kinds = [v.kind for v in graph.vertices]
    assert "distinct" not in kinds and "integrate" in kinds
    assert [v.kind for v in graph.run_no_output] == ["integrate"]


def test_a_cache_must_wrap_one_stateful_vertex() -> None:
    cache = st.Cache[Item]()

    def query(a: st.ZSet[Item]) -> st.ZSet[Item]:
        return cache[a](lambda z: st.map(z, f=lambda i: i))

    with pytest.raises(st.CompileError, match="Cache"):
        st.compile(query)


def test_a_cache_read_before_its_query_is_compiled_is_refused() -> None:
    with pytest.raises(st.CompileError, match="not been compiled"):
        st.Cache[Item]().zset(st.StorePython())


@pytest.mark.parametrize(
    "query",
    [
        lambda a: st.outer_join(
            st.group(a, by=by_key), st.group(a, by=by_key), on_left=by_key, on_right=by_key
        ),
        lambda a: st.per_group[st.group(a, by=by_key)](
            lambda g: st.outer_join(g, g, on_left=by_key, on_right=by_key)
        ),
        lambda a: st.flatten(a),
        lambda a: st.per_group[a](lambda g: g),
        lambda a: st.group(st.group(a, by=by_key), by=by_key),
        lambda a: st.add(a, st.group(a, by=by_key)),
        lambda a: a.iter(),
        lambda a: st.join(
            a, a, on_left=by_key, on_right=st.Index.pick(Item, lambda i: (i.key, i.value))
        ),
    ],
    ids=[
        "outer join of grouped streams",
        "outer join inside per_group",
        "flatten of an ungrouped stream",
        "per_group of an ungrouped stream",
        "group of a grouped stream",
        "add of grouped and ungrouped",
        "reading rows while compiling",
        "join keys of different arity",
    ],
)
def test_queries_the_engine_cannot_run_are_refused_when_compiled(query: Any) -> None:
    def wrapped(a: st.ZSet[Item]) -> Any:
        return query(a)

    with pytest.raises(st.CompileError):
        st.compile(wrapped)


def test_a_query_must_return_streams_built_from_its_inputs() -> None:
    def query(a: st.ZSet[Item]) -> Any:
        return st.ZSetPython()

    with pytest.raises(st.CompileError, match="output 0"):
        st.compile(query)


def test_a_query_needs_an_input() -> None:
    def query() -> Any:
        return None

    with pytest.raises(st.CompileError, match="at least one parameter"):
        st.compile(query)


def test_iteration_checks_the_number_of_inputs() -> None:
    graph = st.compile(two_distincts)
    with pytest.raises(TypeError, match="expected 1 inputs, got 2"):
        st.iteration(st.StorePython.from_graph(graph), graph, (st.ZSetPython(), st.ZSetPython()))


def test_compile_lazy_compiles_once_on_first_use() -> None:
    calls: list[int] = []

    def query(a: st.ZSet[Item]) -> Any:
        calls.append(1)
        return st.distinct(a)

    get = st.compile_lazy(query)
    assert calls == []
    assert get() is get()
    assert calls == [1]


def test_compile_typeof_and_at_compile_time_work_while_tracing() -> None:
    seen: list[Any] = []

    def query(a: st.ZSet[Item]) -> Any:
        with st.at_compile_time:
            seen.append(st.compile_typeof(a))
        return a

    st.compile(query)
    assert seen == [st.ZSet[Item]]
