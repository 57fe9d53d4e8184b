"""The SQLite store: `StoreSQLite.from_graph(conn, graph, create_tables)` on a sqlite3
connection, usually from `connection_sqlite(path)`.

Several processes may run iterations on one database file at once (the seed page's
parallel example): the file is in WAL mode so readers never block the writer, writers
queue on SQLite's lock for up to `BUSY_TIMEOUT_SECS`, and a write transaction takes the
lock when it begins (`BEGIN IMMEDIATE`) so it never fails half way for want of it.
"""

from __future__ import annotations

import operator
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from stepping_django.engine.data import speedups
from stepping_django.engine.serialize import dumps
from stepping_django.engine.stores.sql import (
    Changes,
    Column,
    Dialect,
    IdOf,
    KeyKind,
    Params,
    StoreSQL,
    Table,
    Write,
    encode_date,
    encode_datetime,
    encode_decimal_text,
    encode_time,
    fit,
    same,
)

ConnSQLite: TypeAlias = sqlite3.Connection

#: How long a writer waits for another process's write transaction to finish.
BUSY_TIMEOUT_SECS = 60.0
#: Page cache per connection (SQLite's default is 2 MB): keyed reads and upserts of a
#: large table stay in memory instead of going back to the file.
CACHE_KIB = 65536
#: Pages the WAL may hold before a checkpoint copies them into the file (default 1,000):
#: a page rewritten by several commits in between is copied and synced once.
WAL_CHECKPOINT_PAGES = 20_000


_uuid_bytes: Callable[[uuid.UUID], bytes] = operator.attrgetter("bytes")


def _bind_flat_py(keys: list[tuple[Any, ...]], params: tuple[Any, ...]) -> Params:
    return [v if p is None else p(v) for k in keys for p, v in zip(params, k)]


#: In C where the C module is built: every key a read looks up is bound here.
_bind_flat: Callable[[list[tuple[Any, ...]], tuple[Any, ...]], Params] = (
    _bind_flat_py if speedups is None else speedups.bind_flat
)


def _ids_by_delta_py(changes: Changes, id_of: IdOf) -> tuple[list[bytes], dict[int, list[bytes]]]:
    """The identity of each changed row, and the identities by weight change."""
    ids = [id_of(row) for row, _ in changes]
    by_delta: dict[int, list[bytes]] = {}
    for rid, (_, c) in zip(ids, changes):
        by_delta.setdefault(c, []).append(rid)
    return ids, by_delta


def _rows_left_py(
    write_row: Callable[..., tuple[Any, ...]], ids: list[bytes], changes: Changes, gone: set[bytes]
) -> list[tuple[Any, ...]]:
    """The write parameters of the changed rows a settling delete did not take."""
    return [write_row(row, rid, c) for rid, (row, c) in zip(ids, changes) if rid not in gone]


#: In C where the C module is built: each runs once per changed row of a flush.
_ids_by_delta: Callable[[Changes, IdOf], tuple[list[bytes], dict[int, list[bytes]]]] = (
    _ids_by_delta_py if speedups is None else speedups.ids_by_delta
)
_rows_left: Callable[..., list[tuple[Any, ...]]] = (
    _rows_left_py if speedups is None else speedups.rows_left
)


def _key_params(cols: Sequence[Column], keys: list[tuple[Any, ...]]) -> Params:
    """Encoded keys, flat, each part as its column's kind binds it (`KeyKind.param`)."""
    params = tuple(c.kind.param for c in cols)
    if not any(params):
        return [v for k in keys for v in k]
    return _bind_flat(keys, params)


class SQLiteDialect(Dialect):
    ph = "?"
    blob = "BLOB"
    kinds = {
        "int": KeyKind("INTEGER", same, True),
        "bool": KeyKind("INTEGER", same, True, param=int),
        "float": KeyKind("REAL", float, True),
        "str": KeyKind("TEXT", same, True),
        "bytes": KeyKind("BLOB", same, True, param=bytearray),
        "date": KeyKind("TEXT", encode_date, True),
        "datetime": KeyKind("TEXT", encode_datetime, True),
        "time": KeyKind("TEXT", encode_time, True),
        "uuid": KeyKind("BLOB", _uuid_bytes, True, param=bytearray),
        "decimal": KeyKind("TEXT", encode_decimal_text, False),
        "blob": KeyKind("BLOB", dumps, False, param=bytearray),
    }
    #: The sqlite3 module binds int, float, str and bytearray parameters straight away,
    #: but passes any other value, bytes included, through its adapter registry first (a
    #: tuple, a dict lookup and two attribute lookups: 0.35 us a parameter, measured), so
    #: blobs go out as bytearray (a copy of 16-100 bytes: 0.07 us).
    blob_param = bytearray

    def max_keys(self, conn: Any, columns: int) -> int | None:
        """SQLite caps the number of parameters of one statement; keep a margin for the
        few parameters that are not keys."""
        limit: int = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, (limit - 8) // max(1, columns))

    def match(
        self, table: str, cols: Sequence[Column], keys: list[tuple[Any, ...]]
    ) -> tuple[str, Params]:
        """One column: `IN (...)`, an index search per key. Several: SQLite answers a row
        value `IN (VALUES ...)` by scanning the whole table, so the keys are joined to
        the table's index instead (the keys first, `CROSS JOIN` fixes that order) and
        the rows are then fetched by rowid."""
        if len(cols) == 1:
            marks = ", ".join("?" * len(keys))
            return f"{cols[0].q} IN ({marks})", _key_params(cols, keys)
        row = "(" + ", ".join("?" * len(cols)) + ")"
        on = " AND ".join(f"k.{c.q} = v.column{i}" for i, c in enumerate(cols, 1))
        return (
            f"rowid IN (SELECT k.rowid FROM (VALUES {', '.join([row] * len(keys))}) AS v "
            f"CROSS JOIN {table} AS k ON {on})",
            _key_params(cols, keys),
        )

    def ids_in(self, ids: list[bytes]) -> tuple[str, Params]:
        return f'"identity" IN ({", ".join("?" * len(ids))})', [*map(bytearray, ids)]

    def first_per_key(
        self,
        table: str,
        cols: Sequence[Column],
        keys: list[tuple[Any, ...]],
        where: str,
        order: str,
        limit: int,
    ) -> tuple[str, Params]:
        """SQLite has no LATERAL: each key's rows are the rowids of a correlated subquery,
        `ORDER BY ... LIMIT ?` on the first index (a SEARCH that stops at the LIMIT, no
        sort), which SQLite runs once per key of the VALUES list (`CROSS JOIN` keeps the
        keys outside) and then fetches by rowid."""
        row = "(" + ", ".join("?" * len(cols)) + ")"
        on = " AND ".join(f"r.{c.q} = v.column{i}" for i, c in enumerate(cols, 1))
        return (
            f'SELECT k."identity", k."data", k."c" FROM (VALUES {", ".join([row] * len(keys))}) '
            f"AS v CROSS JOIN {table} AS k ON k.rowid IN (SELECT r.rowid FROM {table} AS r "
            f"WHERE {on} AND {where} ORDER BY {order} LIMIT ?)",
            [*_key_params(cols, keys), limit],
        )

    def upsert(self, conn: Any, table: Table, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(
            f"INSERT INTO {table.q} ({table.insert_columns()}) VALUES ({marks}) "
            'ON CONFLICT ("identity") DO UPDATE SET "c" = "c" + excluded."c"',
            rows,
        )

    def upsert_settling(
        self, conn: Any, table: Table, changes: Changes, write: Write, id_of: IdOf
    ) -> None:
        """Rows of a negative delta (retractions) are deleted where stored at minus it; rows
        of a positive one are looked for only if the table holds a negative weight at all,
        which the partial index of `extra_ddl` answers in one probe (usually: none). Only
        the rows left are encoded for the upsert, with the identities found here (not
        through `write`, which would look each one up again)."""
        ids, by_delta = _ids_by_delta(changes, id_of)
        if (
            table.extra_indexed
            and any(c > 0 for c in by_delta)
            and not self._negatives(conn, table)
        ):
            by_delta = {c: alike for c, alike in by_delta.items() if c < 0}
        size = self.max_keys(conn, 1) or len(changes)
        gone: set[bytes] = set()
        for c, alike in by_delta.items():
            for i in range(0, len(alike), size):
                chunk = alike[i : i + size]
                cur = conn.execute(
                    f'DELETE FROM {table.q} WHERE "c" = ? AND "identity" IN '
                    f'({", ".join("?" * len(chunk))}) RETURNING "identity"',
                    [-c, *map(bytearray, chunk)],
                )
                gone.update(row_id for (row_id,) in cur)
        # The identities are known now: the rows' parameters need only their data.
        rest = _rows_left(table.write_row, ids, changes, gone)
        if rest:
            self.upsert(conn, table, rest)

    updates_in_place = True

    def replace(self, conn: Any, table: Table, rows: list[tuple[Any, Any, int, Any]]) -> None:
        conn.executemany(
            f'UPDATE {table.q} SET "identity" = ?, "data" = ?, "c" = ? WHERE "identity" = ?', rows
        )

    def _negatives(self, conn: Any, table: Table) -> bool:
        """Whether any row of `table` has a negative weight (one probe of a tiny index)."""
        cur = conn.execute(
            f"SELECT 1 FROM {table.q} INDEXED BY {self.quote(_negative_index(table))} "
            'WHERE "c" < 0 LIMIT 1'
        )
        return cur.fetchone() is not None

    def extra_ddl(self, table: Table) -> list[str]:
        """A partial index of the rows of negative weight: nearly always empty, it tells
        `upsert_settling` at once that no added row can settle a stored one."""
        return [
            f"CREATE INDEX IF NOT EXISTS {self.quote(_negative_index(table))} "
            f'ON {table.q} ("c") WHERE "c" < 0'
        ]

    def with_extra_indexes(self, conn: Any, tables: list[Table]) -> set[str]:
        wanted = {_negative_index(t): t.name for t in tables}
        if not wanted:
            return set()
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN "
            f"({', '.join('?' * len(wanted))})",
            list(wanted),
        ).fetchall()
        return {wanted[name] for (name,) in found}

    def existing_columns(self, conn: Any, names: list[str]) -> dict[str, set[str]]:
        wanted = set(names)
        found: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table'"
        ):
            if table in wanted:
                found.setdefault(table, set()).add(column)
        return found

    def set_times(self, conn: Any, names: list[str], t: int) -> None:
        marks = ", ".join("?" * len(names))
        conn.execute(
            f"UPDATE last_update SET t = MAX(t, ?) WHERE table_name IN ({marks})", [t, *names]
        )

    def read_times(self, conn: Any, names: list[str]) -> dict[str, int]:
        marks = ", ".join("?" * len(names))
        cur = conn.execute(
            f"SELECT table_name, t FROM last_update WHERE table_name IN ({marks})", names
        )
        return dict(cur.fetchall())

    def begin_write(self, conn: Any) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")

    def last_update_ddl(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS last_update (\n"
            "    table_name TEXT PRIMARY KEY,\n"
            "    t BIGINT NOT NULL\n"
            ")"
        ]


def _negative_index(table: Table) -> str:
    return fit(f"ix__{table.name}__negative")


class StoreSQLite(StoreSQL):
    """States in SQLite tables; see `StoreSQL` for transactions and `Time`."""

    dialect = SQLiteDialect()


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode. Switching takes an exclusive lock for which SQLite does not
    wait (its busy timeout does not apply), so processes opening a new file together retry
    for up to BUSY_TIMEOUT_SECS instead of failing with "database is locked"."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def connection_sqlite(path: Path | str) -> Iterator[ConnSQLite]:
    """A connection to the SQLite file at `path`, set up for several processes at once.

    The store opens and commits its own transactions on it (autocommit otherwise); an
    exception leaving the block rolls back whatever is still open."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECS, isolation_level=None)
    try:
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        yield conn
        if conn.in_transaction:
            conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    finally:
        conn.close()
