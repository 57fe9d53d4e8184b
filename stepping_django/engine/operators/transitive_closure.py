"""transitive_closure: Pair(x, z) for every z reachable from x along edges Pair(x, y).

An edge is present while its integral weight is positive; each reachable pair has weight 1
(set semantics, the fixed point y = distinct(a + a ∘ y) of DBSP Section 9.1).
Incremental rule: only sources that reach the source u of an edge whose presence flipped
can change. They are u itself, its ancestors before (read from the stored closure) and its
ancestors after (a reverse breadth-first walk of the new edges). For those sources the
reachable set is recomputed over the new edges by a breadth-first walk, one keyed read
per level, and diffed against the stored closure. The cost is the size of the affected
region, not of the graph.
State: the edges' integral (indexed by left and by right) and the closure (likewise).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stepping_django.engine.data import Pair
from stepping_django.engine.graph import CompileError, Vertex
from stepping_django.engine.index import Index
from stepping_django.engine.operators.common import add_into, concrete, is_stream
from stepping_django.engine.stores.base import State, StateSpec
from stepping_django.engine.zset import ZSetPython


def _left(p: Pair[Any, Any]) -> Any:
    return p.left


def _right(p: Pair[Any, Any]) -> Any:
    return p.right


def reach(adjacency: dict[Any, list[Any]], source: Any) -> set[Any]:
    """Every node reachable from `source` by one or more edges."""
    seen: set[Any] = set()
    frontier = list(adjacency.get(source, ()))
    while frontier:
        node = frontier.pop()
        if node not in seen:
            seen.add(node)
            frontier.extend(adjacency.get(node, ()))
    return seen


class TransitiveClosureVertex(Vertex):
    kind = "transitive_closure"

    def __init__(self, a: Vertex, node_type: Any) -> None:
        self.by_left = Index(("left",), (node_type,), (True,), _left)
        self.by_right = Index(("right",), (node_type,), (True,), _right)
        super().__init__((a,), "", a.row_type)

    def make_states(self) -> tuple[StateSpec, ...]:
        ix = (self.by_left, self.by_right)
        return (
            self.state_spec("edges", indexes=ix, row_type=self.row_type),
            self.state_spec("closure", indexes=ix, row_type=self.row_type),
        )

    def _walk(
        self, edges: State, index: Index[Any, Any], start: Iterable[Any]
    ) -> dict[Any, list[Any]]:
        """Adjacency of everything reachable from `start` along `index`, level by level."""
        other = _right if index is self.by_left else _left
        adjacency: dict[Any, list[Any]] = {}
        frontier = set(start)
        while frontier:
            found = edges.lookup(index, frontier)
            for node in frontier:
                adjacency[node] = [other(e) for e, w in found.get(node, {}).items() if w > 0]
            frontier = {n for ns in adjacency.values() for n in ns} - adjacency.keys()
        return adjacency

    def step(self, states: tuple[State, ...], inputs: list[ZSetPython[Any]]) -> ZSetPython[Any]:
        edges, closure = states
        change = inputs[0].data
        before = edges.weights(change.keys())
        edges.add(inputs[0])
        flipped = {
            e.left
            for e, c in change.items()
            if (before.get(e, 0) > 0) != (before.get(e, 0) + c > 0)
        }
        if not flipped:
            return ZSetPython()
        ancestors_after = self._walk(edges, self.by_right, flipped)
        ancestors_before = {
            p.left for rows in closure.lookup(self.by_right, flipped).values() for p in rows
        }
        sources = flipped | ancestors_after.keys() | ancestors_before
        adjacency = self._walk(edges, self.by_left, sources)
        out: dict[Any, int] = {}
        for rows in closure.lookup(self.by_left, sources).values():
            for p in rows:
                out[p] = -1
        for x in sources:
            for z in reach(adjacency, x):
                add_into(out, Pair(x, z), 1)
        delta = ZSetPython.wrap(out)
        closure.add(delta)
        return delta


def closure_from_scratch(z: ZSetPython[Any]) -> ZSetPython[Any]:
    adjacency: dict[Any, list[Any]] = {}
    for e, w in z.data.items():
        if w > 0:
            adjacency.setdefault(e.left, []).append(e.right)
    return ZSetPython.wrap({Pair(x, y): 1 for x in adjacency for y in reach(adjacency, x)})


def transitive_closure(a: Any) -> Any:
    if is_stream(a):
        if a.group is not None:
            raise CompileError("transitive_closure is not supported inside per_group")
        import typing

        args = typing.get_args(a.row_type)
        node_type = args[0] if args else object
        return a.builder.add(TransitiveClosureVertex(a.vertex, node_type))
    return closure_from_scratch(concrete(a))
