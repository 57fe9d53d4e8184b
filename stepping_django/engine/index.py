"""Indexes: how a row is keyed for joins, groups, ordering and store columns.

`Index.pick(T, lambda t: t.a)` calls the lambda once on a recording proxy, so the index
knows its attribute paths (which become typed `ixd__...` columns in SQL stores) and
gets a fast `operator.attrgetter` in place of the lambda.
"""

from __future__ import annotations

import functools
import operator
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stepping_django.engine.data import Data, Pair

T = TypeVar("T")
K = TypeVar("K")


class _Path:
    """Records the attribute and item accesses a key function makes."""

    def __init__(self, steps: tuple[str | int, ...]) -> None:
        self._steps = steps

    def __getattr__(self, name: str) -> _Path:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Path((*self._steps, name))

    def __getitem__(self, i: int) -> _Path:
        return _Path((*self._steps, i))


def _path_name(steps: tuple[str | int, ...]) -> str:
    return ".".join(str(s) for s in steps)


def _getter(steps: tuple[str | int, ...]) -> Callable[[Any], Any]:
    if all(isinstance(s, str) for s in steps):
        if not steps:
            return lambda row: row
        return operator.attrgetter(_path_name(steps))

    def get(row: Any) -> Any:
        for s in steps:
            row = row[s] if isinstance(s, int) else getattr(row, s)
        return row

    return get


def _type_at(t: Any, steps: tuple[str | int, ...]) -> Any:
    """The declared type found by following `steps` from row type `t` (object where no type
    is declared); a step naming a field that a declared row type lacks is refused."""
    for s in steps:
        origin = typing.get_origin(t) or t
        args = typing.get_args(t)
        if origin is Pair and isinstance(s, str):
            if s not in ("left", "right"):
                raise TypeError(f"Index.pick: a Pair has fields left and right, not {s!r}")
            t = (args[0] if s == "left" else args[1]) if args else object
        elif isinstance(origin, type) and issubclass(origin, Data) and isinstance(s, str):
            hints = {
                k: v for k, v in typing.get_type_hints(origin).items() if not k.startswith("__")
            }
            if s not in hints:
                raise TypeError(
                    f"Index.pick: {origin.__qualname__} has no field {s!r} "
                    f"(fields: {', '.join(hints) or 'none'})"
                )
            t = hints[s]
        elif origin is tuple and isinstance(s, int) and args:
            t = args[0] if len(args) == 2 and args[1] is Ellipsis else args[s]
        else:
            return object
    return t


def _none_first(v: Any) -> tuple[bool, Any]:
    return (v is not None, v)


class _Desc:
    """Inverts ordering, for descending key parts of any comparable type."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v


@dataclass(frozen=True, eq=False)
class Index(Generic[T, K]):
    """A key on rows of type T: one field (atom) or several (composite, a tuple key)."""

    names: tuple[str, ...]
    key_types: tuple[Any, ...]
    ascending: tuple[bool, ...]
    f: Callable[[T], K] = field(repr=False)
    is_composite: bool = False
    row_type: Any = field(default=object, repr=False)

    @staticmethod
    def pick(
        t: Any, f: Callable[[Any], Any], ascending: bool | tuple[bool, ...] = True
    ) -> Index[Any, Any]:
        try:
            picked = f(_Path(()))
        except TypeError as e:  # arithmetic, a call, a comparison on the recorded row
            raise TypeError(
                f"Index.pick on {getattr(t, '__qualname__', t)}: the key function may only "
                f"read attributes or items of the row (a field or a tuple of fields), not "
                f"compute: {e}"
            ) from None
        if isinstance(picked, tuple):
            paths = tuple(p._steps for p in picked)
            getters = [_getter(p) for p in paths]
            if all(all(isinstance(s, str) for s in p) and p for p in paths):
                getter: Callable[[Any], Any] = operator.attrgetter(*(_path_name(p) for p in paths))
            else:
                getter = lambda row: tuple(g(row) for g in getters)  # noqa: E731
            composite = True
        elif isinstance(picked, _Path):
            paths = (picked._steps,)
            getter = _getter(picked._steps)
            composite = False
        else:
            raise TypeError(
                "Index.pick: the key function may only read attributes or items of the row, "
                f"got {picked!r}"
            )
        key_types = tuple(_type_at(t, p) for p in paths)
        asc = ascending if isinstance(ascending, tuple) else (ascending,) * len(paths)
        if len(asc) != len(paths):
            raise ValueError(f"Index.pick: {len(paths)} key parts but {len(asc)} ascending flags")
        return Index(
            names=tuple(_path_name(p) or "identity" for p in paths),
            key_types=key_types,
            ascending=asc,
            f=getter,
            is_composite=composite,
            row_type=t,
        )

    @staticmethod
    def atom(
        name: str, t: Any, k: Any, f: Callable[[Any], Any], ascending: bool = True
    ) -> Index[Any, Any]:
        return Index((name,), (k,), (ascending,), f, False, t)

    @staticmethod
    def composite(
        names: tuple[str, ...],
        t: Any,
        k: Any,
        f: Callable[[Any], Any],
        ascendings: tuple[bool, ...] | None = None,
    ) -> Index[Any, Any]:
        kt = typing.get_args(k) or (object,) * len(names)
        return Index(names, tuple(kt), ascendings or (True,) * len(names), f, True, t)

    @staticmethod
    def identity(t: Any, ascending: bool = True) -> Index[Any, Any]:
        return Index(("identity",), (t,), (ascending,), _identity, False, t)

    @property
    def name(self) -> str:
        """The index's name in SQL: its field paths joined with `_`."""
        return "_".join(n.replace(".", "_") for n in self.names)

    def parts(self, key: Any) -> tuple[Any, ...]:
        return key if self.is_composite else (key,)  # type: ignore[no-any-return]

    def fingerprint(self) -> str:
        return f"Index({self.names!r},{self.ascending!r})"

    @functools.cached_property
    def sort_key(self) -> Callable[[Any], Any]:
        """Order of keys as the SQL stores order them: None first when ascending."""
        if not self.is_composite:
            if self.ascending[0]:
                return _none_first
            return lambda k: _Desc(_none_first(k))
        asc = self.ascending
        return lambda key: tuple(
            _none_first(v) if a else _Desc(_none_first(v)) for v, a in zip(key, asc)
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Index)
            and self.names == other.names
            and self.ascending == other.ascending
            and self.is_composite == other.is_composite
        )

    def __hash__(self) -> int:
        return hash((self.names, self.ascending, self.is_composite))


def _identity(row: Any) -> Any:
    return row


def lift_left(index: Index[Any, Any]) -> Index[Any, Any]:
    """The same key read from the `left` of a Pair (rows inside a group)."""
    inner = index.f
    return Index(
        tuple(f"left.{n}" for n in index.names),
        index.key_types,
        index.ascending,
        lambda p: inner(p.left),
        index.is_composite,
    )


def with_group(index: Index[Any, Any] | None, group: Index[Any, Any]) -> Index[Any, Any]:
    """A composite key (*group key, *index key) on `Pair(row, group_key)` rows."""
    g_comp = group.is_composite
    if index is None:
        return group
    inner = index.f
    i_comp = index.is_composite

    def f(p: Any) -> tuple[Any, ...]:
        g = p.right if g_comp else (p.right,)
        k = inner(p.left)
        return (*g, *(k if i_comp else (k,)))

    return Index(
        (*group.names, *(f"left.{n}" for n in index.names)),
        (*group.key_types, *index.key_types),
        (*group.ascending, *index.ascending),
        f,
        True,
    )
