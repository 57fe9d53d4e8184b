"""The in-memory store: every state is a dict of key -> {row: weight} per index.

Changes apply at once; a journal of the iteration's changes lets a failed iteration be
rolled back exactly, so memory behaves like the SQL stores' all-or-nothing commit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

from sortedcontainers import SortedKeyList

from stepping_django.engine.index import Index
from stepping_django.engine.serialize import identity
from stepping_django.engine.stores.base import (
    Ordered,
    StateSpec,
    StateView,
    sort_by_index,
    take_first,
)
from stepping_django.engine.time import Time
from stepping_django.engine.zset import ZSetPython


class MemoryState:
    def __init__(self, spec: StateSpec, journal: list[tuple[MemoryState, ZSetPython[Any]]]) -> None:
        self.spec = spec
        self._journal = journal
        indexes = spec.all_indexes
        self._by: dict[Index[Any, Any], dict[Any, dict[Any, int]]] = {ix: {} for ix in indexes}
        self._fs: list[tuple[Callable[[Any], Any], dict[Any, dict[Any, int]]]] = [
            (ix.f, self._by[ix]) for ix in indexes
        ]
        self._data: dict[Any, int] | None = None if indexes else {}
        self._sorted: dict[Ordered, dict[Any, SortedKeyList]] = {o: {} for o in spec.ordered}

    def _weight(self, row: Any) -> int:
        if self._data is not None:
            return self._data.get(row, 0)
        f, buckets = self._fs[0]
        b = buckets.get(f(row))
        return 0 if b is None else b.get(row, 0)

    def add(self, change: ZSetPython[Any]) -> None:
        if not change:
            return
        self._journal.append((self, change))
        self._apply(change.data)

    def _apply(self, items: dict[Any, int]) -> None:
        if self._sorted:
            was = {row: self._weight(row) != 0 for row in items}
        d = self._data
        if d is not None:
            if d.keys().isdisjoint(items):  # all new: in C
                d.update(items)
            else:
                pop = d.pop
                for row, c in items.items():
                    n = pop(row, 0) + c
                    if n:
                        d[row] = n
        for f, buckets in self._fs:
            get = buckets.get
            emptied = []
            for row, c in items.items():
                k = f(row)
                b = get(k)
                if b is None:
                    buckets[k] = {row: c}
                    continue
                n = b.pop(row, 0) + c
                if n:
                    b[row] = n
                elif not b:
                    # Dropped at the end: a change that replaces a key's only row
                    # (retract old, insert new) reuses the bucket.
                    emptied.append(k)
            for k in emptied:
                if not buckets.get(k, True):
                    del buckets[k]
        if self._sorted:
            for row, present in was.items():
                now = self._weight(row) != 0
                if now != present:
                    self._sort_update(row, now)

    def _sort_update(self, row: Any, present: bool) -> None:
        for o, per_group in self._sorted.items():
            g = o.group.f(row) if o.group is not None else None
            sl = per_group.get(g)
            if sl is None:
                order_f, sort_key = o.order.f, o.order.sort_key
                sl = per_group[g] = SortedKeyList(
                    key=lambda r, f=order_f, k=sort_key: (k(f(r)), identity(r))
                )
            if present:
                sl.add(row)
            else:
                sl.remove(row)
                if not sl:
                    del per_group[g]

    def undo(self, change: ZSetPython[Any]) -> None:
        self._apply({row: -c for row, c in change.data.items()})

    def weights(self, rows: Collection[Any]) -> dict[Any, int]:
        d = self._data
        if d is not None:
            return {row: d[row] for row in d.keys() & rows}
        out = {}
        for row in rows:
            w = self._weight(row)
            if w:
                out[row] = w
        return out

    def lookup(self, index: Index[Any, Any], keys: Collection[Any]) -> dict[Any, dict[Any, int]]:
        buckets = self._by[index]
        return {k: b for k in keys if (b := buckets.get(k)) is not None}

    def by_index(self, index: Index[Any, Any], keys: Collection[Any]) -> list[tuple[Any, Any, int]]:
        return sort_by_index(index, self.lookup(index, keys))

    def first(
        self, ordered: Ordered, n: int, groups: Collection[Any] | None = None
    ) -> dict[Any, list[tuple[Any, int]]]:
        per_group = self._sorted[ordered]
        out = {}
        for g in groups if groups is not None else (None,):
            sl = per_group.get(g)
            if sl is not None:
                out[g] = take_first(((row, self._weight(row)) for row in sl), n)
        return out

    def zset(self) -> ZSetPython[Any]:
        if self._data is not None:
            return ZSetPython.wrap(dict(self._data))
        _, buckets = self._fs[0]
        return ZSetPython.wrap({row: c for b in buckets.values() for row, c in b.items()})

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        return iter(self.zset().iter())


class StorePython:
    """Keeps every state in this process's memory."""

    def __init__(self) -> None:
        self._states: dict[str, MemoryState] = {}
        self._journal: list[tuple[MemoryState, ZSetPython[Any]]] = []

    @classmethod
    def from_graph(cls, graph: Any) -> StorePython:
        store = cls()
        for spec in graph.states:
            store.state(spec)
        return store

    def state(self, spec: StateSpec) -> MemoryState:
        s = self._states.get(spec.name)
        if s is None:
            s = self._states[spec.name] = MemoryState(spec, self._journal)
        return s

    def view(self, spec: StateSpec) -> StateView:
        return StateView(self.state(spec))

    def begin(self, time: Time) -> None:
        self._journal.clear()

    def before_read(self, states: tuple[Any, ...], time: Time) -> None:
        return None

    def after_set(self, states: tuple[Any, ...], time: Time) -> None:
        return None

    def commit(self, time: Time) -> None:
        self._journal.clear()

    def rollback(self) -> None:
        for state, change in reversed(self._journal):
            state.undo(change)
        self._journal.clear()
