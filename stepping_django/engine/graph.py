"""Graphs of vertices, built by tracing a query function with symbolic streams.

`compile(query)` calls the query once with one `Stream` per parameter. Each operator,
given a `Stream`, adds a vertex and returns the vertex's output stream; given a concrete
Z-set, it computes its from-scratch result instead. Tracing runs ordinary Python, so
helpers, loops and closures in a query just work, and the graph is in topological order
by construction. A vertex with the same name as one already present *is* that vertex
(same computation on the same inputs), so it is shared rather than run twice.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from stepping_django.engine.index import Index
from stepping_django.engine.naming import digest, fingerprint, vertex_name
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSet, ZSetPython

T = TypeVar("T")


class CompileError(TypeError):
    """A query that cannot be turned into a graph; the message names the query."""


class Vertex:
    """One operator in a graph. Subclasses set `kind`, define `step`, and may own states."""

    kind: ClassVar[str] = "vertex"
    #: An empty change in gives an empty change out, so the vertex can be skipped.
    skip_when_empty: ClassVar[bool] = True
    #: The output is a view over a state (integrate); consumers convert it.
    lazy_output: ClassVar[bool] = False

    name: str

    def __init__(self, inputs: tuple[Vertex, ...], params: str, row_type: Any = object) -> None:
        self.inputs = inputs
        self.row_type = row_type
        self.name = vertex_name(self.kind, params, tuple(v.name for v in inputs))
        self.states: tuple[StateSpec, ...] = self.make_states()

    def state_spec(self, suffix: str, **kw: Any) -> StateSpec:
        return StateSpec(name=f"st_{self.name}_{suffix}", row_type=kw.pop("row_type", object), **kw)

    def make_states(self) -> tuple[StateSpec, ...]:
        return ()

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define step()")

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"


class InputVertex(Vertex):
    kind = "input"

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> Any:
        raise AssertionError("inputs are set, not stepped")


class Stream(Generic[T]):
    """A symbolic Z-set while compiling: the output of one vertex.

    `group` is set inside `per_group`: rows are then `Pair(row, group_key)`.
    """

    __slots__ = ("builder", "vertex", "row_type", "group")

    def __init__(
        self, builder: Builder, vertex: Vertex, row_type: Any, group: Index[Any, Any] | None
    ) -> None:
        self.builder = builder
        self.vertex = vertex
        self.row_type = row_type
        self.group = group

    def iter(self, *args: Any) -> Any:
        raise CompileError(
            "a query cannot read a stream's rows while it is being compiled; "
            "use operators (st.map, st.filter, ...) instead"
        )

    iter_by_index = iter

    def __repr__(self) -> str:
        return f"<Stream {self.vertex.name}>"


@dataclass
class Graph:
    """Vertices in topological order; `states` are the tables a store needs."""

    vertices: tuple[Vertex, ...]
    inputs: tuple[Vertex, ...]
    outputs: tuple[Vertex, ...]
    run_no_output: tuple[Vertex, ...] = ()
    input_types: tuple[Any, ...] = ()
    output_types: tuple[Any, ...] = ()
    name: str = ""

    @property
    def states(self) -> tuple[StateSpec, ...]:
        return tuple(s for v in self.vertices for s in v.states)

    @property
    def delay_vertices(self) -> tuple[Vertex, ...]:
        return tuple(v for v in self.vertices if v.states)

    @property
    def identifier(self) -> str:
        """Changes whenever any vertex changes: names a version of the whole graph."""
        return digest("|".join(v.name for v in (*self.outputs, *self.run_no_output)))


class Builder:
    def __init__(self) -> None:
        self.vertices: dict[str, Vertex] = {}
        self.caches: list[Vertex] = []

    def add(
        self, vertex: Vertex, row_type: Any = None, group: Index[Any, Any] | None = None
    ) -> Stream[Any]:
        existing = self.vertices.get(vertex.name)
        if existing is None:
            self.vertices[vertex.name] = existing = vertex
        return Stream(self, existing, vertex.row_type if row_type is None else row_type, group)

    def graph(self, inputs: tuple[Vertex, ...], outputs: tuple[Vertex, ...], name: str) -> Graph:
        needed: set[str] = set()
        stack = [*outputs, *self.caches]
        while stack:
            v = stack.pop()
            if v.name not in needed:
                needed.add(v.name)
                stack.extend(v.inputs)
        vertices = tuple(v for v in self.vertices.values() if v.name in needed or v in inputs)
        return Graph(
            vertices=vertices,
            inputs=inputs,
            outputs=outputs,
            run_no_output=tuple(self.caches),
            input_types=tuple(v.row_type for v in inputs),
            output_types=tuple(v.row_type for v in outputs),
            name=name,
        )


_compiling: list[Builder] = []


def current_builder() -> Builder | None:
    return _compiling[-1] if _compiling else None


def row_type_of(annotation: Any) -> Any:
    """`st.ZSet[Product]` -> Product (object when unannotated)."""
    if annotation is inspect.Parameter.empty:
        return object
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if (
        origin is not None
        and args
        and (origin is ZSet or getattr(origin, "__name__", "") in ("ZSet", "ZSetPython"))
    ):
        return args[0]
    return object


def compile(func: Callable[..., Any]) -> Graph:
    """Trace `func` into a graph with one input per parameter."""
    qual = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func)
    except Exception as e:
        raise CompileError(f"query {qual}: cannot read its annotations: {e}") from e
    params = list(inspect.signature(func).parameters.values())
    if not params:
        raise CompileError(f"query {qual}: needs at least one parameter (an input Z-set)")
    builder = Builder()
    inputs = []
    for i, p in enumerate(params):
        t = row_type_of(hints.get(p.name, inspect.Parameter.empty))
        v = InputVertex((), f"{i}:{fingerprint(t)}", t)
        inputs.append(v)
    streams = [builder.add(v) for v in inputs]
    _compiling.append(builder)
    try:
        result = func(*streams)
    finally:
        _compiling.pop()
    results = result if isinstance(result, tuple) else (result,)
    for i, r in enumerate(results):
        if not isinstance(r, Stream) or r.builder is not builder:
            raise CompileError(
                f"query {qual}: output {i} is {type(r).__name__}, not a stream built from "
                "the query's inputs"
            )
    out_types = (
        [row_type_of(hints.get("return", inspect.Parameter.empty))] if len(results) == 1 else []
    )
    graph = builder.graph(tuple(inputs), tuple(r.vertex for r in results), qual)
    if out_types and out_types[0] is not object:
        graph.output_types = tuple(out_types)
    return graph


def compile_lazy(func: Callable[..., Any]) -> Callable[[], Graph]:
    graph: list[Graph] = []

    def get() -> Graph:
        if not graph:
            graph.append(compile(func))
        return graph[0]

    return get


def compile_typeof(x: Any) -> Any:
    if isinstance(x, Stream):
        return ZSet[x.row_type]  # type: ignore[name-defined]
    return type(x)


class _AtCompileTime:
    """`with st.at_compile_time:`: tracing already runs the block at compile time."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


at_compile_time = _AtCompileTime()
