"""Running a graph: one iteration applies one change per input and returns the outputs'
changes. `actions` wraps iteration for one input at a time, the way stepping does."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stepping_django.engine.graph import Graph, Vertex
from stepping_django.engine.stores.base import State, Store
from stepping_django.engine.time import Time
from stepping_django.engine.zset import ZSetPython

T = TypeVar("T")

_EMPTY: ZSetPython[Any] = ZSetPython()


@dataclass
class _Step:
    slot: int
    vertex: Vertex
    states: tuple[State, ...]
    inputs: tuple[int, ...]
    convert: tuple[bool, ...]
    skippable: bool
    #: A lazy output (a view over a state) that is read later: read it before the store
    #: may commit that state, so every reader sees this iteration's snapshot, never rows a
    #: later time has written since (SQL stores with flush_every_set).
    materialise: bool = False


@dataclass
class _Plan:
    input_slots: tuple[int, ...]
    output_slots: tuple[int, ...]
    steps: tuple[_Step, ...]
    size: int


def _plan(store: Store, graph: Graph) -> _Plan:
    """Resolve slots and states once per (store, graph): iterations then only index lists.

    Plans are kept on the store, which is short-lived beside its graph: a plan refers to
    the store's states, so keeping it on the graph would keep every store ever used alive.
    """
    plans: dict[int, tuple[Graph, _Plan]] | None = getattr(store, "_st_plans", None)
    if plans is None:
        plans = {}
        setattr(store, "_st_plans", plans)  # noqa: B010 (stores are any object)
    cached = plans.get(id(graph))
    if cached is not None and cached[0] is graph:
        return cached[1]
    slot = {v.name: i for i, v in enumerate(graph.vertices)}
    read = {i.name for v in graph.vertices for i in v.inputs} | {v.name for v in graph.outputs}
    steps = []
    for v in graph.vertices:
        if v in graph.inputs:
            continue
        convert = tuple(i.lazy_output for i in v.inputs)
        steps.append(
            _Step(
                slot[v.name],
                v,
                tuple(store.state(s) for s in v.states),
                tuple(slot[i.name] for i in v.inputs),
                convert,
                v.skip_when_empty and not any(convert),
                materialise=v.lazy_output and v.name in read,
            )
        )
    plan = _Plan(
        tuple(slot[v.name] for v in graph.inputs),
        tuple(slot[v.name] for v in graph.outputs),
        tuple(steps),
        len(graph.vertices),
    )
    plans[id(graph)] = (graph, plan)
    return plan


def _as_python(z: Any) -> ZSetPython[Any]:
    if isinstance(z, ZSetPython):
        return z
    return z.to_python()  # type: ignore[no-any-return]


def iteration(
    store: Store, graph: Graph, inputs: Sequence[Any], time: Time = Time()
) -> tuple[ZSetPython[Any], ...]:
    """Apply one change per input, in one transaction unless `time` says otherwise."""
    plan = _plan(store, graph)
    if len(inputs) != len(plan.input_slots):
        raise TypeError(f"{graph.name}: expected {len(plan.input_slots)} inputs, got {len(inputs)}")
    values: list[Any] = [_EMPTY] * plan.size
    for i, z in zip(plan.input_slots, inputs):
        values[i] = _as_python(z)
    # Rows hold no reference cycles; a cyclic collection in the middle of an iteration
    # would only walk every row the states hold, more often as they grow. Collections
    # run between iterations instead.
    gc_enabled = gc.isenabled()
    if gc_enabled:
        gc.disable()
    store.begin(time)
    try:
        for s in plan.steps:
            if s.skippable and not any(values[i] for i in s.inputs):
                continue
            args = [
                values[i] if not conv else _as_python(values[i])
                for i, conv in zip(s.inputs, s.convert)
            ]
            if s.states:
                store.before_read(s.states, time)
                values[s.slot] = s.vertex.step(s.states, args)
                if s.materialise:
                    values[s.slot] = _as_python(values[s.slot])
                store.after_set(s.states, time)
            else:
                values[s.slot] = s.vertex.step(s.states, args)
        if time.flush_every_set is not None:
            store.commit(time)
    except BaseException:
        store.rollback()
        if gc_enabled:
            gc.enable()
        raise
    try:
        return tuple(_as_python(values[i]) for i in plan.output_slots)
    finally:
        # Free the intermediate Z-sets before the collector may run, so it never walks them.
        values.clear()
        if gc_enabled:
            gc.enable()


def _bag(rows: Sequence[Any], sign: int) -> ZSetPython[Any]:
    counts = Counter(rows)  # counted in C, one hash per row
    if sign == 1:
        return ZSetPython.wrap(dict(counts))
    return ZSetPython.wrap({r: c * sign for r, c in counts.items()})


class Action:
    """Changes to one input of a graph; each call runs one iteration."""

    def __init__(self, store: Store, graph: Graph, position: int) -> None:
        self.store = store
        self.graph = graph
        self.position = position

    def _run(self, change: ZSetPython[Any], time: Time) -> tuple[ZSetPython[Any], ...]:
        inputs: list[ZSetPython[Any]] = [_EMPTY] * len(self.graph.inputs)
        inputs[self.position] = change
        return iteration(self.store, self.graph, inputs, time)

    def insert(self, *rows: Any, time: Time = Time()) -> tuple[ZSetPython[Any], ...]:
        return self._run(_bag(rows, 1), time)

    def remove(self, *rows: Any, time: Time = Time()) -> tuple[ZSetPython[Any], ...]:
        return self._run(_bag(rows, -1), time)

    def replace(self, old: Any, new: Any, time: Time = Time()) -> tuple[ZSetPython[Any], ...]:
        return self._run(ZSetPython({old: -1}) + ZSetPython({new: 1}), time)


def actions(store: Store, graph: Graph) -> tuple[Action, ...]:
    return tuple(Action(store, graph, i) for i in range(len(graph.inputs)))


def batched(items: Sequence[T], n: int) -> Iterator[list[T]]:
    """Successive lists of at most `n` items."""
    if n < 1:
        raise ValueError("batched: n must be at least 1")
    for i in range(0, len(items), n):
        yield list(items[i : i + n])
