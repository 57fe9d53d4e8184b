"""Decoded rows by identity, so a SQL store decodes each stored row once, not at every read.

An identity is a digest of the row's encoding, so it names one row for good: an entry
never goes stale, whoever writes the table, and needs no invalidation. The cache is per
state (one row family per table) and bounded: when full it is emptied and refilled by
the next reads, which costs one decode per row again, never a wrong row.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.data import Data
from stepping_django.engine.serialize import loads

#: Decoded rows kept per state; about 100 MB at most for rows of a few fields.
MAX_DECODED_ROWS = 200_000


class DecodedRows:
    def __init__(self, limit: int = MAX_DECODED_ROWS) -> None:
        self.limit = limit
        self._rows: dict[bytes, Any] = {}
        #: The row of an identity already decoded, else None (ids as the database gives them).
        self.get = self._rows.get

    def load(self, row_id: Any, data: Any, ids: dict[Any, bytes] | None) -> Any:
        """The row stored as (`row_id`, `data`), its identity remembered on it (Data rows)
        or in `ids`, so writing it back or ordering by identity need not encode it."""
        rid = bytes(row_id)
        row = self._rows.get(rid)
        if row is None:
            row = loads(bytes(data))
            if isinstance(row, Data):
                row.__dict__["_st_id"] = rid
            self.keep(rid, row)
        if ids is not None and not isinstance(row, Data):
            ids[row] = rid
        return row

    def keep(self, rid: bytes, row: Any) -> None:
        rows = self._rows
        if len(rows) >= self.limit:
            rows.clear()
        rows[rid] = row
