"""The Postgres store: `StorePostgres.from_graph(conn, graph, create_tables)` on a psycopg 3
connection, usually from `connection_postgres(url)`.

Keys travel as arrays (`= ANY(%s::bigint[])`, `unnest(...)`), so a batch of any size is one
parameter per key column. Text keys use `COLLATE "C"`, so SQL orders them as Python does.
psycopg is imported on first use, so `import stepping_django.engine` stays quick.
"""

from __future__ import annotations

import atexit
import copy
import datetime
import itertools
import os
import select
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from stepping_django.engine.serialize import dumps
from stepping_django.engine.stores.sql import (
    MAX_IDENTIFIER_BYTES,
    Changes,
    Column,
    Dialect,
    IdOf,
    KeyKind,
    Params,
    StoreSQL,
    Table,
    Write,
    encode_datetime,
    encode_time,
    quote,
    same,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    ConnPostgres: TypeAlias = psycopg.Connection[tuple[Any, ...]]
else:
    ConnPostgres = Any

#: Connections each process keeps open per database URL.
POOL_MAX_SIZE = 4
#: The first server version with MERGE (`server_version` numbering).
MERGE_SINCE = 150000


# -- arrays in Postgres's binary format ---------------------------------------------------
# Keys and rows travel as one array parameter per column. psycopg builds a binary array in
# Python, one dumper call per element; most of our arrays are packed here instead by one
# struct.pack or bytes.join per array, and handed to psycopg as they are (`PackedArray`).


class PackedArray(bytes):
    """An array already in Postgres's binary format (array_send); `oid` is its type's."""

    oid = 0


#: Days from 0001-01-01 (Python's ordinal 1) to Postgres's date epoch, 2000-01-01.
_PG_EPOCH_ORDINAL = datetime.date(2000, 1, 1).toordinal()
_FOUR = struct.Struct(">i").pack


def _pack_fixed(fmt: str, size: int, convert: Callable[[Any], Any] | None) -> Callable[..., bytes]:
    """Elements of one fixed-size binary form: one struct.pack for the whole array."""

    def pack(head: list[int], values: list[Any]) -> bytes:
        items = values if convert is None else [convert(v) for v in values]
        body = itertools.chain.from_iterable(zip(itertools.repeat(size), items))
        return struct.pack(">5i" + ("i" + fmt) * len(values), *head, *body)

    return pack


def _pack_varlen(to_bytes: Callable[[Any], bytes] | None) -> Callable[..., bytes]:
    """Elements of varying size: each behind its length, joined once."""

    def pack(head: list[int], values: list[Any]) -> bytes:
        items = values if to_bytes is None else list(map(to_bytes, values))
        sizes = set(map(len, items))
        if len(sizes) == 1:  # identities, UUIDs: one length, so one join with it between
            each = _FOUR(sizes.pop())
            return struct.pack(">5i", *head) + each + each.join(items)
        return struct.pack(">5i", *head) + b"".join([_FOUR(len(b)) + b for b in items])

    return pack


def _date_days(v: datetime.date) -> int:
    return v.toordinal() - _PG_EPOCH_ORDINAL


def _uuid_bytes(v: uuid.UUID) -> bytes:
    return v.int.to_bytes(16)  # what `v.bytes` gives, without its property call


def _utf8(v: str) -> bytes:
    return v.encode()


#: array type -> (array oid, element oid, packer of non-NULL elements). Other array types
#: (numeric[]) and arrays holding NULL are left to psycopg.
_PACKERS: dict[str, tuple[int, int, Callable[[list[int], list[Any]], bytes]]] = {
    "bytea[]": (1001, 17, _pack_varlen(None)),
    "bigint[]": (1016, 20, _pack_fixed("q", 8, None)),
    "float8[]": (1022, 701, _pack_fixed("d", 8, float)),
    "boolean[]": (1000, 16, _pack_fixed("?", 1, None)),
    "date[]": (1182, 1082, _pack_fixed("i", 4, _date_days)),
    "uuid[]": (2951, 2950, _pack_varlen(_uuid_bytes)),
    "text[]": (1009, 25, _pack_varlen(_utf8)),
}
_PACKED_CLASSES: dict[str, type[PackedArray]] = {
    name: type(f"PackedArray_{name[:-2]}", (PackedArray,), {"oid": oid})
    for name, (oid, _, _) in _PACKERS.items()
}


def pg_array(array_type: str, values: Sequence[Any]) -> Any:
    """`values` as a parameter of `array_type`: packed here when we can, else a list."""
    spec = _PACKERS.get(array_type)
    listed = list(values)
    if spec is None or None in listed:
        return listed
    if array_type == "text[]" and any("\0" in v for v in listed):
        import psycopg

        raise psycopg.DataError("Postgres text cannot contain NUL (0x00) characters")
    oid, element_oid, pack = spec
    if not listed:
        return _PACKED_CLASSES[array_type](struct.pack(">3i", 0, 0, element_oid))
    return _PACKED_CLASSES[array_type](pack([1, 0, element_oid, len(listed), 1], listed))


def register_packed_arrays(conn: Any) -> None:
    """Teach `conn` to send `PackedArray`s as they are (binary, with their type)."""
    if not _DUMPERS:
        from psycopg.adapt import Dumper
        from psycopg.pq import Format

        for cls in _PACKED_CLASSES.values():
            attrs = {"format": Format.BINARY, "oid": cls.oid, "dump": _dump_as_is}
            _DUMPERS[cls] = type(f"{cls.__name__}Dumper", (Dumper,), attrs)
    for cls, dumper in _DUMPERS.items():
        conn.adapters.register_dumper(cls, dumper)


_DUMPERS: dict[type[PackedArray], type] = {}


def _dump_as_is(self: Any, obj: bytes) -> bytes:
    return obj


_TEXT = 'TEXT COLLATE "C"'


def send_all(conn: Any) -> None:
    """Push out what libpq still holds of the statements queued in a pipeline.

    psycopg (3.3.9) waits for the server's answer at a pipeline's sync (a read, the
    commit) without first sending the rest of a statement too big for the socket's
    buffer (some tens of MB): the server waits for that rest, and both wait for ever.
    Outside a pipeline the buffer is already empty."""
    pgconn = conn.pgconn
    poll = None
    while pgconn.flush():  # 1: more to send, once the socket takes it
        if poll is None:
            poll = select.poll()
            poll.register(pgconn.socket, select.POLLIN | select.POLLOUT)
        if any(event & select.POLLIN for _, event in poll.poll()):
            pgconn.consume_input()  # the server's answers so far, so it can go on


class PostgresDialect(Dialect):
    ph = "%s"
    blob = "BYTEA"
    explicit_nulls = True
    kinds = {
        "int": KeyKind("BIGINT", same, True, "bigint[]"),
        "bool": KeyKind("BOOLEAN", bool, True, "boolean[]"),
        "float": KeyKind("DOUBLE PRECISION", float, True, "float8[]"),
        "str": KeyKind(_TEXT, same, True, "text[]"),
        "bytes": KeyKind("BYTEA", same, True, "bytea[]"),
        "date": KeyKind("DATE", same, True, "date[]"),
        "datetime": KeyKind(_TEXT, encode_datetime, True, "text[]"),
        "time": KeyKind(_TEXT, encode_time, True, "text[]"),
        "uuid": KeyKind("UUID", same, True, "uuid[]"),
        "decimal": KeyKind("NUMERIC", same, True, "numeric[]"),
        "blob": KeyKind("BYTEA", dumps, False, "bytea[]"),
    }

    def quote(self, name: str) -> str:
        """Quoted, with `%` doubled: psycopg reads `%` in a query as a placeholder."""
        return quote(name).replace("%", "%%")

    def check_table_name(self, name: str) -> None:
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise ValueError(
                f"table name {name!r} is longer than Postgres's {MAX_IDENTIFIER_BYTES} bytes"
            )

    def match(
        self, table: str, cols: Sequence[Column], keys: list[tuple[Any, ...]]
    ) -> tuple[str, Params]:
        columns = [self.array(c.kind.array_type, values) for c, values in zip(cols, zip(*keys))]
        if len(cols) == 1:
            return f"{cols[0].q} = ANY(%b::{cols[0].kind.array_type})", columns
        names = ", ".join(c.q for c in cols)
        arrays = ", ".join(f"%b::{c.kind.array_type}" for c in cols)
        return f"({names}) IN (SELECT * FROM unnest({arrays}))", columns

    pipelines = True

    def batch(self, conn: Any) -> Any:
        # Pipeline mode: a flush's upserts, deletes, times and COMMIT go out back to back,
        # one wait for the server instead of one per statement.
        return conn.pipeline()

    def ids_in(self, ids: list[bytes]) -> tuple[str, Params]:
        return '"identity" = ANY(%b::bytea[])', [self.array("bytea[]", ids)]

    def first_per_key(
        self,
        table: str,
        cols: Sequence[Column],
        keys: list[tuple[Any, ...]],
        where: str,
        order: str,
        limit: int,
    ) -> tuple[str, Params]:
        """The keys as arrays (one parameter per column, as `match`), each joined LATERAL
        to its own `ORDER BY ... LIMIT`: an Index Scan of the first index under a Limit,
        run once per key."""
        names = ", ".join(f"k{i}" for i in range(len(cols)))
        arrays = ", ".join(f"%b::{c.kind.array_type}" for c in cols)
        on = " AND ".join(f"r.{c.q} = v.k{i}" for i, c in enumerate(cols))
        return (
            f'SELECT x."identity", x."data", x."c" FROM unnest({arrays}) AS v ({names}) '
            f'CROSS JOIN LATERAL (SELECT r."identity", r."data", r."c" FROM {table} AS r '
            f"WHERE {on} AND {where} ORDER BY {order} LIMIT %s) AS x",
            [
                *(self.array(c.kind.array_type, values) for c, values in zip(cols, zip(*keys))),
                limit,
            ],
        )

    def _types(self, table: Table) -> list[str]:
        return ["bytea[]", "bytea[]", *(c.kind.array_type for c in table.key_columns), "bigint[]"]

    def _arrays(self, table: Table) -> str:
        # Binary parameters (%b): psycopg's text format escapes every bytea element in Python,
        # which took half of an iteration's time (meter_reads: 6,000 -> 9,200 rows/s).
        return ", ".join(f"%b::{t}" for t in self._types(table))

    def _columns(self, table: Table, rows: list[tuple[Any, ...]]) -> Params:
        return [self.array(t, column) for t, column in zip(self._types(table), zip(*rows))]

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._send(conn, sql, params)
        return list(cur.fetchall()) if cur.description is not None else []

    def query(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._send(conn, sql, params).fetchall())

    def _send(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """`conn.execute`, then all of the statement out of libpq's buffer (`send_all`)."""
        cur = conn.execute(sql, params)
        send_all(conn)
        return cur

    def upsert(self, conn: Any, table: Table, rows: list[tuple[Any, ...]]) -> None:
        self._send(
            conn,
            f"INSERT INTO {table.q} ({table.insert_columns()}) "
            f"SELECT * FROM unnest({self._arrays(table)}) "
            f'ON CONFLICT ("identity") DO UPDATE SET "c" = {table.q}."c" + excluded."c"',
            self._columns(table, rows),
        )

    def upsert_settling(
        self, conn: Any, table: Table, changes: Changes, write: Write, id_of: IdOf
    ) -> None:
        """One statement. MERGE (Postgres 15+) finds each row once and deletes, updates or
        inserts it (20% less server time than the CTE in a measure of the meter-reads
        tables). It is safe because one iteration at a time writes a table (the frontier
        protocol; in Django, the view's lock): a concurrent insert of the same row would
        fail the iteration, which rolls back, where the CTE's ON CONFLICT would not. Older
        servers run the CTE: its delete and upsert see one snapshot, and the upsert leaves
        out the rows the delete took."""
        t, cols = table.q, table.insert_columns()
        if self.merges:
            sql = (
                f"MERGE INTO {t} USING (SELECT * FROM unnest({self._arrays(table)}) "
                f'AS u ({cols})) AS u ON {t}."identity" = u."identity" '
                f'WHEN MATCHED AND {t}."c" + u."c" = 0 THEN DELETE '
                f'WHEN MATCHED THEN UPDATE SET "c" = {t}."c" + u."c" '
                f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES "
                f"({', '.join('u.' + c for c in table.insert_column_names())})"
            )
        else:
            sql = (
                f"WITH u ({cols}) AS (SELECT * FROM unnest({self._arrays(table)})), "
                f"gone AS (DELETE FROM {t} USING u "
                f'WHERE {t}."identity" = u."identity" AND {t}."c" = -u."c" '
                f'RETURNING {t}."identity") '
                f"INSERT INTO {t} ({cols}) SELECT * FROM u "
                f'WHERE NOT EXISTS (SELECT FROM gone WHERE gone."identity" = u."identity") '
                f'ON CONFLICT ("identity") DO UPDATE SET "c" = {t}."c" + excluded."c"'
            )
        self._send(conn, sql, self._columns(table, [write(row, c) for row, c in changes]))

    def existing_columns(self, conn: Any, names: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(%s::text[])",
            [names],
        ):
            found.setdefault(table, set()).add(column)
        return found

    def set_times(self, conn: Any, names: list[str], t: int) -> None:
        conn.execute(
            "UPDATE last_update SET t = GREATEST(t, %s) WHERE table_name = ANY(%s::text[])",
            [t, names],
        )

    def read_times(self, conn: Any, names: list[str]) -> dict[str, int]:
        cur = conn.execute(
            "SELECT table_name, t FROM last_update WHERE table_name = ANY(%s::text[])", [names]
        )
        return dict(cur.fetchall())

    #: Whether arrays are packed here (`pg_array`); not on a connection that binds
    #: parameters on the client (Django's default `ClientCursor`), which can only quote
    #: parameters as text.
    packs = True
    #: Whether the server has MERGE (Postgres 15+; see `upsert_settling`).
    merges = True

    def prepare(self, conn: Any) -> Self:
        from psycopg import ClientCursor

        packs = not issubclass(conn.cursor_factory, ClientCursor)
        merges = conn.info.server_version >= MERGE_SINCE
        if packs:
            register_packed_arrays(conn)
        if (packs, merges) == (self.packs, self.merges):
            return self
        dialect = copy.copy(self)
        dialect.packs, dialect.merges = packs, merges
        return dialect

    def array(self, array_type: str, values: Sequence[Any]) -> Any:
        return pg_array(array_type, values) if self.packs else list(values)

    def check_connection(self, conn: Any, owns_transaction: bool) -> None:
        if owns_transaction and conn.autocommit:
            raise ValueError(
                "StorePostgres: the connection is in autocommit mode, so an iteration could "
                "not be rolled back; turn autocommit off, or pass owns_transaction=False "
                "and run iterations inside your own transaction"
            )

    def lock_for_ddl(self, conn: Any) -> None:
        """`CREATE ... IF NOT EXISTS` is not safe against a concurrent twin on Postgres."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('stepping_django.create_tables'))")

    def last_update_ddl(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS last_update (\n"
            f"    table_name {_TEXT} PRIMARY KEY,\n"
            "    t BIGINT NOT NULL\n"
            ")"
        ]


class StorePostgres(StoreSQL):
    """States in Postgres tables; see `StoreSQL` for transactions and `Time`."""

    dialect = PostgresDialect()


_POOLS: dict[tuple[str, int], psycopg_pool.ConnectionPool[Any]] = {}


def _pool(url: str) -> psycopg_pool.ConnectionPool[Any]:
    """This process's pool for `url` (a forked child makes its own: pools hold threads)."""
    key = (url, os.getpid())
    pool = _POOLS.get(key)
    if pool is None:
        import psycopg_pool

        pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=POOL_MAX_SIZE, open=True, kwargs={"autocommit": False}
        )
        _POOLS[key] = pool
        atexit.register(pool.close)
    return pool


@contextmanager
def connection_postgres(url: str) -> Iterator[ConnPostgres]:
    """A connection from this process's pool for `url`: committed when the block ends,
    rolled back if it raises, and returned to the pool."""
    with _pool(url).connection() as conn:
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def close_pools() -> None:
    """Close this process's connection pools (at shutdown, or when done with a database)."""
    for key in [k for k in _POOLS if k[1] == os.getpid()]:
        _POOLS.pop(key).close()
