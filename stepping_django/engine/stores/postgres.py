"""The Postgres store: `StorePostgres.from_graph(conn, graph, create_tables)` on a psycopg 3
connection, usually from `connection_postgres(url)`.

Keys travel as arrays (`= ANY(%s::bigint[])`, `unnest(...)`), so a batch of any size is one
parameter per key column. Text keys use `COLLATE "C"`, so SQL orders them as Python does.
psycopg is imported on first use, so `import stepping_django.engine` stays quick.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from stepping_django.engine.serialize import dumps
from stepping_django.engine.stores.sql import (
    MAX_IDENTIFIER_BYTES,
    Column,
    Dialect,
    KeyKind,
    Params,
    StoreSQL,
    Table,
    encode_datetime,
    encode_time,
    quote,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    ConnPostgres: TypeAlias = psycopg.Connection[tuple[Any, ...]]
else:
    ConnPostgres = Any

#: Connections each process keeps open per database URL.
POOL_MAX_SIZE = 4


def _same(v: Any) -> Any:
    return v


_TEXT = 'TEXT COLLATE "C"'


class PostgresDialect(Dialect):
    ph = "%s"
    blob = "BYTEA"
    explicit_nulls = True
    kinds = {
        "int": KeyKind("BIGINT", _same, True, "bigint[]"),
        "bool": KeyKind("BOOLEAN", bool, True, "boolean[]"),
        "float": KeyKind("DOUBLE PRECISION", float, True, "float8[]"),
        "str": KeyKind(_TEXT, _same, True, "text[]"),
        "bytes": KeyKind("BYTEA", _same, True, "bytea[]"),
        "date": KeyKind("DATE", _same, True, "date[]"),
        "datetime": KeyKind(_TEXT, encode_datetime, True, "text[]"),
        "time": KeyKind(_TEXT, encode_time, True, "text[]"),
        "uuid": KeyKind("UUID", _same, True, "uuid[]"),
        "decimal": KeyKind("NUMERIC", _same, True, "numeric[]"),
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

    def match(self, cols: Sequence[Column], keys: list[tuple[Any, ...]]) -> tuple[str, Params]:
        columns = [list(values) for values in zip(*keys)]
        if len(cols) == 1:
            return f"{cols[0].q} = ANY(%s::{cols[0].kind.array_type})", columns
        names = ", ".join(c.q for c in cols)
        arrays = ", ".join(f"%s::{c.kind.array_type}" for c in cols)
        return f"({names}) IN (SELECT * FROM unnest({arrays}))", columns

    pipelines = True

    def batch(self, conn: Any) -> Any:
        # Pipeline mode: a flush's upserts, deletes, times and COMMIT go out back to back,
        # one wait for the server instead of one per statement.
        return conn.pipeline()

    def ids_in(self, ids: list[bytes]) -> tuple[str, Params]:
        return '"identity" = ANY(%b::bytea[])', [list(ids)]

    def _arrays(self, table: Table) -> str:
        types = ["bytea[]", "bytea[]", *(c.kind.array_type for c in table.key_columns), "bigint[]"]
        # Binary parameters (%b): psycopg's text format escapes every bytea element in Python,
        # which took half of an iteration's time (meter_reads: 6,000 -> 9,200 rows/s).
        return ", ".join(f"%b::{t}" for t in types)

    def upsert(self, conn: Any, table: Table, rows: list[tuple[Any, ...]]) -> None:
        conn.execute(
            f"INSERT INTO {table.q} ({table.insert_columns()}) "
            f"SELECT * FROM unnest({self._arrays(table)}) "
            f'ON CONFLICT ("identity") DO UPDATE SET "c" = {table.q}."c" + excluded."c"',
            [list(column) for column in zip(*rows)],
        )

    def upsert_settling(self, conn: Any, table: Table, rows: list[tuple[Any, ...]]) -> None:
        """One statement: the delete and the upsert see the same snapshot, and the upsert
        leaves out the rows the delete took."""
        t, cols = table.q, table.insert_columns()
        conn.execute(
            f"WITH u ({cols}) AS (SELECT * FROM unnest({self._arrays(table)})), "
            f"gone AS (DELETE FROM {t} USING u "
            f'WHERE {t}."identity" = u."identity" AND {t}."c" = -u."c" '
            f'RETURNING {t}."identity") '
            f"INSERT INTO {t} ({cols}) SELECT * FROM u "
            f'WHERE NOT EXISTS (SELECT FROM gone WHERE gone."identity" = u."identity") '
            f'ON CONFLICT ("identity") DO UPDATE SET "c" = {t}."c" + excluded."c"',
            [list(column) for column in zip(*rows)],
        )

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
