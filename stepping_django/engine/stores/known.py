"""Rows a SQL state has read or written, by identity and identity by row, so a state
decodes each stored row once and encodes each row once, not at every read or write.

An identity is a digest of the row's encoding, so it names one row for good: an entry
never goes stale, whoever writes the table, and needs no invalidation. A row built again
equal to one already known (a total retracted by a later change, say) finds its identity
by hash instead of being encoded again. The maps are per state and bounded: when full
they are emptied and refilled by the next reads and writes, which costs one decode or
encode per row again, never a wrong row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from stepping_django.engine.data import Data, speedups
from stepping_django.engine.serialize import dumps, identity, identity_of_bytes, loads

#: Rows kept per state: enough for the rows a batch touches, a few MB for rows of a few fields.
MAX_KNOWN_ROWS = 20_000


class KnownRows:
    def __init__(self, limit: int = MAX_KNOWN_ROWS) -> None:
        self.limit = limit
        self._rows: dict[bytes, Any] = {}
        self._ids: dict[Any, bytes] = {}
        #: The row of an identity already known, else None (ids as the database gives them).
        self.get = self._rows.get
        #: The identity of a row equal to `row` already known, else None.
        self.id_of = self._ids.get

    def load(self, row_id: Any, data: Any) -> Any:
        """The row stored as (`row_id`, `data`)."""
        rid = bytes(row_id)
        row = self._rows.get(rid)
        if row is None:
            row = loads(bytes(data))
            if isinstance(row, Data):
                object.__setattr__(row, "_st_id", rid)
            self.keep(rid, row)
        return row

    def id(self, row: Any) -> bytes:
        """`row`'s identity, encoding it only if no equal row is known."""
        rid = self._ids.get(row)
        if rid is None:
            rid = identity(row)
            self.keep(rid, row)
        return rid

    def id_and_data(self, row: Any) -> tuple[bytes, bytes]:
        """`row`'s identity and encoding, each made at most once; the row is kept, so the
        next reads of it need not decode it."""
        rid = self._ids.get(row)
        if rid is not None or isinstance(row, Data):  # Data rows cache their bytes
            rid, data = rid or identity(row), dumps(row)
        else:  # encode once, for the identity and the data
            data = dumps(row)
            rid = identity_of_bytes(data)
        self.keep(rid, row)
        return rid, data

    def load_by(
        self, found: Iterable[tuple[Any, Any, int]], f: Callable[[Any], Any]
    ) -> dict[Any, dict[Any, int]]:
        """Stored (identity, data, weight) rows, decoded, by their key `f(row)`."""
        out: dict[Any, dict[Any, int]] = {}
        for row_id, data, c in found:
            row = self.load(row_id, data)
            out.setdefault(f(row), {})[row] = c
        return out

    def replacements(
        self, replaced: Iterable[tuple[Any, Any, int]], bind: Callable[[bytes], Any] | None
    ) -> list[tuple[Any, Any, int, Any]]:
        """(new identity, new data, weight, old identity) of each (old row, new row, weight)
        updated in place, the blobs bound by `bind` when there is one."""
        out = []
        for old, new, c in replaced:
            rid, data = self.id_and_data(new)
            oid = self.id(old)
            out.append(
                (rid, data, c, oid) if bind is None else (bind(rid), bind(data), c, bind(oid))
            )
        return out

    def keep(self, rid: bytes, row: Any) -> None:
        if len(self._rows) >= self.limit:
            self._rows.clear()
            self._ids.clear()
        self._rows[rid] = row
        self._ids[row] = rid


class Known(Protocol):
    """What a SQL state uses of its known rows: KnownRows, or the C one."""

    def load(self, row_id: Any, data: Any) -> Any: ...
    def id(self, row: Any) -> bytes: ...
    def keep(self, rid: bytes, row: Any) -> None: ...
    def id_and_data(self, row: Any) -> tuple[bytes, bytes]: ...
    def load_by(
        self, found: Iterable[tuple[Any, Any, int]], f: Callable[[Any], Any]
    ) -> dict[Any, dict[Any, int]]: ...
    def replacements(
        self, replaced: Iterable[tuple[Any, Any, int]], bind: Callable[[bytes], Any] | None
    ) -> list[tuple[Any, Any, int, Any]]: ...
    def get(self, rid: bytes, /) -> Any: ...
    def id_of(self, row: Any, /) -> bytes | None: ...


def known_rows(limit: int = MAX_KNOWN_ROWS) -> Known:
    """A state's known rows: KnownRows (the reference) in C where the C module is built,
    as every row a state reads or writes passes through them."""
    if speedups is None:
        return KnownRows(limit)
    known: Known = speedups.KnownRows(loads, limit)
    return known
