"""The contract every store implements, and the read-only Z-set view over one state.

A *state* is the only place an operator keeps anything between iterations (a delay
vertex; one table in a SQL store). Operators talk to states through `State` only, and only
by the keys a change touches, so one iteration costs the size of the change:

- `add(change)`: fold a change in; visible to this iteration's later reads at once,
  persisted by the store when it flushes (see `Store`).
- `weights(rows)`, `lookup(index, keys)`, `first(...)`: keyed reads, each one round trip.
- `zset()`: the whole content, for caches and for integrate's output.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from stepping_django.engine.index import Index
from stepping_django.engine.serialize import identity
from stepping_django.engine.time import Time
from stepping_django.engine.zset import MATCH_ALL, ZSetPython, table


@dataclass(frozen=True)
class Ordered:
    """An ordered scan a state must support: rows by `order`, optionally per `group` key."""

    order: Index[Any, Any]
    group: Index[Any, Any] | None = None


@dataclass(frozen=True)
class StateSpec:
    """One state (SQL table): its stable name, its keyed indexes and its ordered scans."""

    name: str
    indexes: tuple[Index[Any, Any], ...] = ()
    ordered: tuple[Ordered, ...] = ()
    row_type: Any = object

    @property
    def all_indexes(self) -> tuple[Index[Any, Any], ...]:
        """Every index the table needs a column set for, each once."""
        seen: list[Index[Any, Any]] = list(self.indexes)
        for o in self.ordered:
            for ix in (o.group, o.order):
                if ix is not None and ix not in seen:
                    seen.append(ix)
        return tuple(seen)


class State(Protocol):
    spec: StateSpec

    def add(self, change: ZSetPython[Any]) -> None:
        """Fold `change` in (weights add; rows reaching 0 disappear)."""

    def weights(self, rows: Collection[Any]) -> dict[Any, int]:
        """The current weight of each of `rows` that is present."""

    def lookup(self, index: Index[Any, Any], keys: Collection[Any]) -> dict[Any, dict[Any, int]]:
        """Rows (with weights) under each of `keys` that has any; do not mutate the result."""

    def first(
        self, ordered: Ordered, n: int, groups: Collection[Any] | None = None
    ) -> dict[Any, list[tuple[Any, int]]]:
        """Per group key (None when ungrouped), the rows with positive weight in order,
        up to `n` rows' worth of weight; ties broken by row identity."""

    def by_index(self, index: Index[Any, Any], keys: Collection[Any]) -> list[tuple[Any, Any, int]]:
        """(key, row, weight) under `keys`, by key then row identity: what a cache read by
        index yields (`StateView.iter_by_index`)."""

    def zset(self) -> ZSetPython[Any]:
        """The whole content as an in-memory Z-set."""


def sort_by_index(
    index: Index[Any, Any], found: dict[Any, dict[Any, int]]
) -> list[tuple[Any, Any, int]]:
    """`lookup`'s answer as `by_index` gives it."""
    out = [(k, row, c) for k, rows in found.items() for row, c in rows.items()]
    sort_key = index.sort_key
    out.sort(key=lambda r: (sort_key(r[0]), identity(r[1])))
    return out


class Store(Protocol):
    """Holds the states of one graph and decides when their changes become durable."""

    def state(self, spec: StateSpec) -> State: ...

    def begin(self, time: Time) -> None:
        """Start an iteration at `time`."""

    def before_read(self, states: tuple[State, ...], time: Time) -> None:
        """Wait until each state has reached `time.frontier` (SQL stores)."""

    def after_set(self, states: tuple[State, ...], time: Time) -> None:
        """A vertex has finished with its states (flush them when flush_every_set=True)."""

    def commit(self, time: Time) -> None:
        """End the iteration: flush everything not yet flushed, record `time.input_time`."""

    def rollback(self) -> None:
        """Undo every change of the failed iteration that was not yet committed."""


def take_first(rows: Iterator[tuple[Any, int]], n: int) -> list[tuple[Any, int]]:
    """The first `n` rows' worth of positive weight; a row may be cut short."""
    out: list[tuple[Any, int]] = []
    left = n
    for row, count in rows:
        if left <= 0:
            break
        if count <= 0:
            continue
        take = min(count, left)
        out.append((row, take))
        left -= take
    return out


class StateView:
    """A read-only Z-set over one state (what `cache.zset(store)` returns)."""

    def __init__(self, state: State) -> None:
        self._state = state

    def to_python(self) -> ZSetPython[Any]:
        return self._state.zset()

    def iter(self, match: Any = MATCH_ALL) -> Iterator[tuple[Any, int]]:
        if match is MATCH_ALL:
            return self.to_python().iter()
        return iter(self._state.weights(list(match)).items())

    def iter_by_index(
        self, index: Index[Any, Any], match_keys: Any = MATCH_ALL
    ) -> Iterator[tuple[Any, Any, int]]:
        if match_keys is MATCH_ALL or index not in self._state.spec.all_indexes:
            return self.to_python().iter_by_index(index, match_keys)
        return iter(self._state.by_index(index, list(match_keys)))

    def __eq__(self, other: object) -> bool:
        return self.to_python() == other

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.to_python())

    def __repr__(self) -> str:
        return f"<ZSet {self._state.spec.name}>\n" + table(self.to_python().iter())
