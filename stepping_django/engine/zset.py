"""Z-sets: rows with non-zero integer weights.

`ZSetPython` is a plain dict of row -> weight. Entries of weight 0 are never stored, so
`len` is the number of distinct rows and equality is dict equality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import groupby
from typing import Any, Generic, Protocol, TypeVar

from stepping_django.engine.data import speedups
from stepping_django.engine.index import Index


class MatchAll:
    """Sentinel: match every row or key."""

    def __repr__(self) -> str:
        return "MATCH_ALL"


MATCH_ALL = MatchAll()

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K")


class ZSet(Protocol[T_co]):
    """What every Z-set offers, in memory or backed by a store table."""

    def iter(self, match: Any = MATCH_ALL) -> Iterator[tuple[Any, int]]: ...

    def iter_by_index(
        self, index: Index[Any, Any], match_keys: Any = MATCH_ALL
    ) -> Iterator[tuple[Any, Any, int]]: ...


class ZSetPython(Generic[T]):
    """An in-memory Z-set. `data` is a dict (taken as given) or (row, weight) pairs."""

    __slots__ = ("_data", "indexes")

    def __init__(
        self,
        data: Mapping[T, int] | Iterable[tuple[T, int]] | None = None,
        indexes: tuple[Index[T, Any], ...] = (),
    ) -> None:
        self.indexes = indexes
        if data is None:
            self._data: dict[T, int] = {}
        elif isinstance(data, dict):
            self._data = {k: v for k, v in data.items() if v != 0}
        else:
            d: dict[T, int] = {}
            get = d.get
            for row, count in data.items() if isinstance(data, Mapping) else data:
                d[row] = get(row, 0) + count
            self._data = {k: v for k, v in d.items() if v != 0}

    @classmethod
    def wrap(cls, data: dict[T, int]) -> ZSetPython[T]:
        """Adopt `data` without copying; the caller promises it has no zero weights."""
        z = cls.__new__(cls)
        z._data = data
        z.indexes = ()
        return z

    @property
    def data(self) -> dict[T, int]:
        return self._data

    def iter(self, match: Any = MATCH_ALL) -> Iterator[tuple[T, int]]:
        if match is MATCH_ALL:
            return iter(self._data.items())
        d = self._data
        return ((row, d[row]) for row in match if row in d)

    def iter_by_index(
        self, index: Index[T, K], match_keys: Any = MATCH_ALL
    ) -> Iterator[tuple[K, T, int]]:
        f = index.f
        rows = [(f(row), row, count) for row, count in self._data.items()]
        if match_keys is not MATCH_ALL:
            keys = set(match_keys)
            rows = [r for r in rows if r[0] in keys]
        sort_key = index.sort_key
        from stepping_django.engine.serialize import identity

        rows.sort(key=lambda r: (sort_key(r[0]), identity(r[1])))
        return iter(rows)

    def iter_grouped(self, index: Index[T, K]) -> Iterator[tuple[K, list[tuple[T, int]]]]:
        for key, group in groupby(self.iter_by_index(index), key=lambda r: r[0]):
            yield key, [(row, count) for _, row, count in group]

    def get_count(self, row: T) -> int:
        return self._data.get(row, 0)

    def empty(self) -> bool:
        return not self._data

    def copy(self) -> ZSetPython[T]:
        return ZSetPython.wrap(dict(self._data))

    def to_python(self) -> ZSetPython[T]:
        return self

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __contains__(self, row: object) -> bool:
        return row in self._data

    def __add__(self, other: Any) -> ZSetPython[T]:
        if not isinstance(other, ZSetPython):
            other = other.to_python()
        if not other._data:
            return self
        if not self._data:
            return other  # type: ignore[no-any-return]
        d = dict(self._data)
        add_into(d, other._data)
        return ZSetPython.wrap(d)

    def __neg__(self) -> ZSetPython[T]:
        return ZSetPython.wrap({k: -v for k, v in self._data.items()})

    def __sub__(self, other: Any) -> ZSetPython[T]:
        return self + (-other)  # type: ignore[no-any-return]

    def __mul__(self, n: int) -> ZSetPython[T]:
        if n == 0:
            return ZSetPython()
        return ZSetPython.wrap({k: v * n for k, v in self._data.items()})

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ZSetPython):
            return self._data == other._data
        to_python = getattr(other, "to_python", None)
        if to_python is not None:
            return self._data == to_python()._data  # type: ignore[no-any-return]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<ZSetPython>\n" + table(self._data.items())


def add_into_py(target: dict[Any, int], items: dict[Any, int]) -> None:
    """Add the Z-set `items` into the Z-set `target`, in place."""
    get = target.get
    for row, c in items.items():
        n = get(row, 0) + c
        if n:
            target[row] = n
        else:
            del target[row]


#: Z-set addition in place, in C where the C module is built (it hashes each row once).
add_into: Callable[[dict[Any, int], dict[Any, int]], None] = (
    add_into_py if speedups is None else speedups.add_into
)


def table(rows: Iterable[tuple[Any, int]]) -> str:
    """A boxed two-column table of weight and row, the way Z-sets print."""
    cells = [("_count_", "_value_")] + [(str(c), str(v)) for v, c in rows]
    w0 = max(len(c[0]) for c in cells)
    w1 = max(len(c[1]) for c in cells)

    def line(left: str, mid: str, right: str, fill: str) -> str:
        return left + fill * (w0 + 2) + mid + fill * (w1 + 2) + right

    out = [line("╒", "╤", "╕", "═")]
    for i, (c, v) in enumerate(cells):
        out.append(f"│ {c.rjust(w0)} │ {v.ljust(w1)} │")
        if i == 0:
            out.append(line("╞", "╪", "╡", "═"))
        elif i < len(cells) - 1:
            out.append(line("├", "┼", "┤", "─"))
    out.append(line("╘", "╧", "╛", "═"))
    return "\n".join(out)
