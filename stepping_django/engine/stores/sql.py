"""What the SQLite and Postgres stores share: table layout, keyed reads, batched writes.

One table per state (the seed page's layout):

    identity BLOB PRIMARY KEY   the row's stable identity (`serialize.identity`)
    data     BLOB NOT NULL      the row (`serialize.dumps`)
    ixd__<index>__<field> ...   one typed column per field of each index, with a real index
    c        BIGINT NOT NULL    the weight (rows of weight 0 are deleted)

plus `last_update(table_name, t)`: every change up to time `t` is in that table.

An iteration never reads a table whole (only `zset()` does, for caches and integrate
views): `weights`, `lookup` and `first` are each one statement for a whole batch of keys,
and the answer is merged in Python with the changes this iteration has made but not yet
written (`pending`). Writing a state is a few batched statements: an upsert of the rows
whose stored weight the iteration read, a delete of those that reached 0, and one pass over
the rest that deletes a row stored at minus its change and upserts the others
(`upsert_settling`). The dialects (sqlite.py, postgres.py) only say how to spell things.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import operator
import types
import typing
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Self

from stepping_django.engine.data import speedups
from stepping_django.engine.index import Index
from stepping_django.engine.serialize import dumps
from stepping_django.engine.stores.base import (
    Ordered,
    StateSpec,
    StateView,
    sort_by_index,
    take_first,
)
from stepping_django.engine.stores.known import known_rows
from stepping_django.engine.stores.wait import wait_for_frontier
from stepping_django.engine.time import Time
from stepping_django.engine.zset import ZSetPython, add_into

#: Postgres truncates longer identifiers; we shorten them ourselves, the same way on every
#: database, so two long names can never collide after truncation.
MAX_IDENTIFIER_BYTES = 63

Encode = Callable[[Any], Any]
Params = list[Any]
#: Rows of unknown stored weight, as (row, delta), how to write one, and its identity.
Changes = list[tuple[Any, int]]
Write = Callable[[Any, int], tuple[Any, ...]]
IdOf = Callable[[Any], bytes]


def quote(name: str) -> str:
    """A safely quoted SQL identifier, whatever characters `name` holds."""
    return '"' + name.replace('"', '""') + '"'


def fit(name: str) -> str:
    """`name`, or a shortened form ending in a digest of it when it is too long."""
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=5).hexdigest()
    return name.encode()[: MAX_IDENTIFIER_BYTES - 11].decode(errors="ignore") + "_" + digest


# -- key columns ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyKind:
    """How one Python key type is stored: SQL type, encoder, and whether SQL orders it
    exactly as Python does (else it is compared for equality only)."""

    sql_type: str
    encode: Encode
    orderable: bool
    array_type: str = ""
    #: What an encoded value becomes as a statement parameter, where the driver binds
    #: another type more cheaply (SQLite: `bytearray` for blobs); None: the value as is.
    param: Callable[[Any], Any] | None = None


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        nullable = len(members) < len(typing.get_args(tp))
        return (members[0] if len(members) == 1 else object), nullable
    return tp, False


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (bytes, "bytes"),
    (datetime.datetime, "datetime"),
    (datetime.date, "date"),
    (datetime.time, "time"),
    (uuid.UUID, "uuid"),
    (decimal.Decimal, "decimal"),
)


def kind_name(key_type: Any) -> tuple[str, bool]:
    """The storage kind of a declared key type, and whether NULL (None) is allowed.

    Undeclared types (`object`, `Any`, unions of several types) are stored as encoded bytes
    and may hold None; so are enums, tuples and rows, NULL only when declared Optional."""
    tp, nullable = _unwrap_optional(key_type)
    if not isinstance(tp, type) or tp is object or tp is type(None):
        return "blob", True
    if issubclass(tp, enum.Enum):
        return "blob", nullable
    for t, name in _KINDS:
        if issubclass(tp, t):
            return name, nullable
    return "blob", nullable


def encode_datetime(v: datetime.datetime) -> str:
    """Text that sorts like Python: aware values in UTC marked `Z`, naive ones as they are."""
    if v.tzinfo is not None and v.utcoffset() is not None:
        v = v.astimezone(datetime.UTC).replace(tzinfo=None)
        return v.isoformat(timespec="microseconds") + "Z"
    return v.isoformat(timespec="microseconds")


#: Times and dates as ISO text (called for every key written: C callers, no Python frame).
encode_time: Callable[[datetime.time], str] = operator.methodcaller(
    "isoformat", timespec="microseconds"
)
encode_date: Callable[[datetime.date], str] = operator.methodcaller("isoformat")


def encode_decimal_text(v: decimal.Decimal) -> str:
    """Equal decimals (1.0 and 1.00, -0 and 0) give equal text."""
    if v.is_zero():
        return "0"
    return str(v.normalize())


def same(v: Any) -> Any:
    """A key kind's encoder for values stored as they are."""
    return v


#: How a row's key value becomes a statement parameter: its kind's encoder (None: the value
#: as it is) then its `param` (None: the encoded value as it is); None stays None.
ParamSpec = tuple[Encode | None, Callable[[Any], Any] | None]


def param_of(spec: ParamSpec, v: Any) -> Any:
    """A key value as a write passes it (`_speedups.write_row` does the same in C)."""
    if v is None:
        return None
    encode, param = spec
    if encode is not None:
        v = encode(v)
    return v if param is None else param(v)


@dataclass(frozen=True)
class Column:
    name: str
    q: str
    kind: KeyKind
    nullable: bool
    ascending: bool

    def encode(self, v: Any) -> Any:
        return None if v is None else self.kind.encode(v)

    @property
    def encoder(self) -> Encode | None:
        """The kind's encoder, or None for values stored as they are (no call to make)."""
        return None if self.kind.encode is same else self.kind.encode

    def param_spec(self) -> ParamSpec:
        """What a row's write passes for this column: `encoder`, then the kind's `param`."""
        return (self.encoder, self.kind.param)


# -- dialects ---------------------------------------------------------------------------


class Dialect:
    """How one database spells what the store needs. Subclasses fill in the blanks."""

    ph = "?"
    blob = "BLOB"
    kinds: dict[str, KeyKind] = {}
    #: Postgres needs NULLS FIRST/LAST spelled out; SQLite's defaults already match Python.
    explicit_nulls = False
    #: What an identity or encoded row becomes as a parameter of a row's write (see
    #: `KeyKind.param`); None: the bytes as they are.
    blob_param: Callable[[bytes], Any] | None = None

    def quote(self, name: str) -> str:
        return quote(name)

    def check_table_name(self, name: str) -> None:
        """Refuse a table name the database would silently change."""

    def max_keys(self, conn: Any, columns: int) -> int | None:
        """How many keys of `columns` columns one statement may carry (None: no limit)."""
        return None

    def match(
        self, table: str, cols: Sequence[Column], keys: list[tuple[Any, ...]]
    ) -> tuple[str, Params]:
        """A condition on `table` (quoted), true where its (non-NULL) `cols` equal one of
        `keys`; the database must answer it from the index of `cols`, key by key."""
        raise NotImplementedError

    def ids_in(self, ids: list[bytes]) -> tuple[str, Params]:
        """A condition true where `identity` is one of `ids`."""
        raise NotImplementedError

    def first_per_key(
        self,
        table: str,
        cols: Sequence[Column],
        keys: list[tuple[Any, ...]],
        where: str,
        order: str,
        limit: int,
    ) -> tuple[str, Params]:
        """A SELECT of "identity", "data", "c": for each of `keys` (distinct values of
        `cols`, none NULL), the first `limit` rows of `table` (quoted) where `where`, in
        `order`. Both name the table's columns as `r.<column>`. The database must read each
        key's rows from the index of (`cols`, order columns, identity) and stop at `limit`:
        a window over the whole group (ROW_NUMBER() ... rn <= limit) reads every row of it."""
        raise NotImplementedError

    def upsert(self, conn: Any, table: Table, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def upsert_settling(
        self, conn: Any, table: Table, changes: Changes, write: Write, id_of: IdOf
    ) -> None:
        """Upsert rows whose stored weights are unknown, given as (row, delta), with
        `write(row, delta)` making a row's upsert parameters and `id_of(row)` its identity:
        a row stored at exactly minus its delta is deleted instead, so no row is left at
        weight 0 and none is checked after. A retracted row is deleted without being
        written first."""
        raise NotImplementedError

    def existing_columns(self, conn: Any, names: list[str]) -> dict[str, set[str]]:
        raise NotImplementedError

    #: Whether `replace` rewrites a row in place, cheaper than a delete and an insert
    #: (SQLite: an update leaves the indexes of unchanged columns alone).
    updates_in_place = False

    def replace(self, conn: Any, table: Table, rows: list[tuple[Any, Any, int, Any]]) -> None:
        """Rows (new identity, new data, weight, old identity), blobs bound as `blob_param`
        binds them: the stored row of the old identity becomes the new row, whose key
        columns are the same."""
        raise NotImplementedError

    def extra_ddl(self, table: Table) -> list[str]:
        """Indexes of this database's own beyond the seed's layout (none by default)."""
        return []

    def with_extra_indexes(self, conn: Any, tables: list[Table]) -> set[str]:
        """The names of `tables` that have every index of `extra_ddl` (a table made before
        one was added works without it, the slower way)."""
        return {t.name for t in tables}

    def set_times(self, conn: Any, names: list[str], t: int) -> None:
        raise NotImplementedError

    def read_times(self, conn: Any, names: list[str]) -> dict[str, int]:
        raise NotImplementedError

    def begin_write(self, conn: Any) -> None:
        """Start a write transaction if none is open (the store owns the transaction)."""

    def check_connection(self, conn: Any, owns_transaction: bool) -> None:
        """Refuse a connection the store cannot use as configured."""

    def prepare(self, conn: Any) -> Self:
        """The dialect for `conn`, which the store is about to use (each time one is made)."""
        return self

    def lock_for_ddl(self, conn: Any) -> None:
        """Keep other processes creating the same tables out until this transaction ends."""

    def last_update_ddl(self) -> list[str]:
        raise NotImplementedError

    def order_term(self, col: str, ascending: bool) -> str:
        """ORDER BY term: None first when ascending, last when descending (as Python)."""
        if not self.explicit_nulls:
            return col if ascending else f"{col} DESC"
        return f"{col} ASC NULLS FIRST" if ascending else f"{col} DESC NULLS LAST"

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description is not None else []

    def query(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a SELECT (in a pipeline too, where the description comes later)."""
        return list(conn.execute(sql, params).fetchall())

    def commit(self, conn: Any) -> None:
        conn.commit()

    #: Whether `batch` sends statements without waiting (then a state's writes go out as
    #: soon as its vertex is done, and the server applies them while Python goes on).
    pipelines = False

    def batch(self, conn: Any) -> AbstractContextManager[Any]:
        """Around the writes of one flush: send them without waiting for each (Postgres)."""
        return nullcontext()

    def rollback(self, conn: Any) -> None:
        conn.rollback()


class MissingTable(LookupError):
    """`create_tables=False` and a table (or its last_update row) is not there."""


# -- table layout -----------------------------------------------------------------------


class Table:
    """The columns and SQL of one state's table, worked out once per store."""

    def __init__(self, spec: StateSpec, dialect: Dialect) -> None:
        dialect.check_table_name(spec.name)
        self.spec = spec
        self.name = spec.name
        self.q = dialect.quote(spec.name)
        self.dialect = dialect
        self.columns: dict[Index[Any, Any], list[Column]] = {}
        self.index_names: dict[Index[Any, Any], str] = {}
        used: set[str] = set()
        for ix in spec.all_indexes:
            ix_name = ix.name
            if ix_name in used:
                ix_name += "__" + "".join("a" if a else "d" for a in ix.ascending)
            used.add(ix_name)
            self.index_names[ix] = ix_name
            self.columns[ix] = [
                self._column(ix_name, field, key_type, asc)
                for field, key_type, asc in zip(ix.names, ix.key_types, ix.ascending)
            ]
        self.key_columns = [c for cols in self.columns.values() for c in cols]
        #: Whether the table has the dialect's `extra_ddl` indexes (known once attached).
        self.extra_indexed = False
        #: Where the dialect updates rows in place: the index whose equal keys mean equal
        #: key columns, all of them, so a row replaced by one of the same key keeps its key
        #: columns (one index, none stored as bytes, whose encoding of equal values may
        #: differ). Else None.
        ixs = list(self.columns)
        blob = dialect.kinds.get("blob")
        pairable = len(ixs) == 1 and all(c.kind is not blob for c in self.key_columns)
        self.in_place_index = ixs[0] if dialect.updates_in_place and pairable else None
        self._writers = tuple(
            (ix.f, ix.is_composite, tuple(c.param_spec() for c in cols))
            for ix, cols in self.columns.items()
        )
        self._blob_param = dialect.blob_param
        #: The upsert parameters of one row: identity, data, key columns, weight delta
        #: (`_write_row_py`, in C where the C module is built: it runs for every row written).
        self.write_row: Callable[..., tuple[Any, ...]] = (
            self._write_row_py
            if speedups is None
            else functools.partial(speedups.write_row, self._writers, self._blob_param)
        )

    def _column(self, ix_name: str, field: str, key_type: Any, ascending: bool) -> Column:
        kind, nullable = kind_name(key_type)
        name = fit(f"ixd__{ix_name}__{field.replace('.', '_')}")
        return Column(name, self.dialect.quote(name), self.dialect.kinds[kind], nullable, ascending)

    def ddl(self) -> list[str]:
        """CREATE TABLE and CREATE INDEX statements, all idempotent."""
        d = self.dialect
        cols = [f'"identity" {d.blob} PRIMARY KEY', f'"data" {d.blob} NOT NULL']
        cols += [
            f"{c.q} {c.kind.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in self.key_columns
        ]
        cols.append('"c" BIGINT NOT NULL')
        out = [f"CREATE TABLE IF NOT EXISTS {self.q} (\n    " + ",\n    ".join(cols) + "\n)"]
        for ix, ix_cols in self.columns.items():
            out.append(self._index_ddl(self.index_names[ix], ix_cols, with_identity=False))
        for o in self.spec.ordered:
            group = self.columns[o.group] if o.group is not None else []
            label = "first__" + "__".join(
                self.index_names[ix] for ix in (o.group, o.order) if ix is not None
            )
            out.append(self._index_ddl(label, group + self.columns[o.order], with_identity=True))
        return out + self.dialect.extra_ddl(self)

    def _index_ddl(self, label: str, cols: list[Column], with_identity: bool) -> str:
        terms = [self.dialect.order_term(c.q, c.ascending) for c in cols]
        if with_identity:
            terms.append('"identity"')
        name = self.dialect.quote(fit(f"ix__{self.name}__{label}"))
        return f"CREATE INDEX IF NOT EXISTS {name} ON {self.q} ({', '.join(terms)})"

    def column_names(self) -> set[str]:
        return {"identity", "data", "c", *(c.name for c in self.key_columns)}

    def _write_row_py(
        self, row: Any, row_id: bytes, c: int, data: bytes | None = None
    ) -> tuple[Any, ...]:
        if data is None:
            data = dumps(row)
        bind = self._blob_param
        values: list[Any] = [row_id, data] if bind is None else [bind(row_id), bind(data)]
        for f, composite, specs in self._writers:
            key = f(row)
            if composite:
                values.extend(map(param_of, specs, key))
            else:
                values.append(param_of(specs[0], key))
        values.append(c)
        return tuple(values)

    def insert_column_names(self) -> list[str]:
        return ['"identity"', '"data"', *(c.q for c in self.key_columns), '"c"']

    def insert_columns(self) -> str:
        return ", ".join(self.insert_column_names())


def _encode_parts_py(
    keys: Iterable[Any], composite: bool, encodes: tuple[Encode | None, ...]
) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The keys with no part None, each part encoded (an encoder None: as it is), and the
    keys with a part None, as they are."""
    encoded: list[tuple[Any, ...]] = []
    with_none: list[Any] = []
    for key in keys:
        parts = tuple(key) if composite else (key,)
        if len(parts) != len(encodes):
            raise ValueError(f"a key of {len(parts)} parts for {len(encodes)} columns")
        if any(p is None for p in parts):
            with_none.append(key)
            continue
        encoded.append(tuple(p if e is None else e(p) for e, p in zip(encodes, parts)))
    return encoded, with_none


#: In C where the C module is built: every key a read looks up is encoded here.
_encode_parts: Callable[
    [Iterable[Any], bool, tuple[Encode | None, ...]], tuple[list[tuple[Any, ...]], list[Any]]
] = _encode_parts_py if speedups is None else speedups.encode_parts


def _encode_keys(
    cols: Sequence[Column], index: Index[Any, Any], keys: Iterable[Any]
) -> dict[tuple[bool, ...], list[tuple[Any, ...]]]:
    """Encoded keys, split by which parts are None (those match with IS NULL instead).

    A key with None for a NOT NULL column is left out: no row is under it, and SQLite
    answers `col IS NULL OR col IN (...)` on such a column by reading every row."""
    encodes = tuple(c.encoder for c in cols)
    complete, with_none = _encode_parts(keys, index.is_composite, encodes)
    by_pattern: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    for key in with_none:
        parts = index.parts(key)
        pattern = tuple(p is None for p in parts)
        if any(null and not c.nullable for c, null in zip(cols, pattern)):
            continue
        values = tuple(
            p if e is None else e(p) for e, p, null in zip(encodes, parts, pattern) if not null
        )
        by_pattern.setdefault(pattern, []).append(values)
    if complete:
        by_pattern[(False,) * len(cols)] = complete
    return by_pattern


def key_condition(
    dialect: Dialect,
    table: str,
    cols: Sequence[Column],
    index: Index[Any, Any],
    keys: Iterable[Any],
) -> tuple[str, Params]:
    """One condition selecting the rows under any of `keys` (None parts as IS NULL), or
    "" when no row can be under any of them (`_encode_keys`)."""
    terms: list[str] = []
    params: Params = []
    for pattern, values in _encode_keys(cols, index, keys).items():
        parts = [f"{c.q} IS NULL" for c, null in zip(cols, pattern) if null]
        live = [c for c, null in zip(cols, pattern) if not null]
        if live:
            sql, p = dialect.match(table, live, list(dict.fromkeys(values)))
            parts.append(sql)
            params.extend(p)
        terms.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(terms), params


# -- one state --------------------------------------------------------------------------


class SQLState:
    """One table, plus this iteration's changes not yet written (`pending`, by row and by
    every index key), so keyed reads merge the two quickly."""

    def __init__(self, store: StoreSQL, spec: StateSpec) -> None:
        self.spec = spec
        self.table = Table(spec, store.dialect)
        self._store = store
        self._pending: dict[Any, int] = {}
        #: `pending` by key, for the indexes read since the last flush only (`_buckets`):
        #: a state that is only written (an integrate's, a join side whose other side
        #: did not change) never files its changes by key.
        self._pending_by: dict[Index[Any, Any], Buckets] = {}
        #: Stored weights (the table's, without `pending`) of rows this iteration has read,
        #: and the index keys it has looked up (every stored row under them was read). The
        #: frontier protocol keeps the table unchanged between an iteration's reads and its
        #: writes, so a flush knows which of these rows reach 0 without asking again.
        self._known: dict[Any, int] = {}
        self._looked: dict[Index[Any, Any], set[Any]] = {}
        self._rows = known_rows()

    def add(self, change: ZSetPython[Any]) -> None:
        items = change.data
        if not items:
            return
        add_into(self._pending, items)
        for ix, buckets in self._pending_by.items():
            _file(buckets, ix.f, items)

    def _buckets(self, index: Index[Any, Any]) -> Buckets:
        """`pending` by `index`'s key: filed now if this index was not read since the
        last flush, then kept up to date by `add`."""
        buckets = self._pending_by.get(index)
        if buckets is None:
            buckets = self._pending_by[index] = {}
            _file(buckets, index.f, self._pending)
        return buckets

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def _query(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        return self._store.dialect.query(self._store.conn, sql, params)

    def _chunks(self, items: Collection[Any], columns: int) -> list[list[Any]]:
        """`items` in as few statements as the database's parameter limit allows (one,
        unless a change is very large)."""
        size = self._store.dialect.max_keys(self._store.conn, columns)
        listed = list(items)
        if size is None or len(listed) <= size:
            return [listed]
        return [listed[i : i + size] for i in range(0, len(listed), size)]

    def weights(self, rows: Collection[Any]) -> dict[Any, int]:
        if not rows:
            return {}
        by_id = {self._rows.id(row): row for row in rows}
        out: dict[Any, int] = {}
        for ids in self._chunks(by_id, 1):
            cond, params = self._store.dialect.ids_in(ids)
            sql = f'SELECT "identity", "c" FROM {self.table.q} WHERE {cond}'
            out.update((by_id[bytes(i)], c) for i, c in self._query(sql, params))
        if self._store._running is not None:
            known = self._known
            for row in by_id.values():
                known[row] = out.get(row, 0)
        pending = self._pending
        for row in by_id.values():
            d = pending.get(row)
            if d:
                n = out.get(row, 0) + d
                if n:
                    out[row] = n
                else:
                    del out[row]
        return out

    def lookup(self, index: Index[Any, Any], keys: Collection[Any]) -> dict[Any, dict[Any, int]]:
        if not keys:
            return {}
        out = self._rows.load_by(self._by_keys(index, keys, '"identity", "data", "c"'), index.f)
        if self._store._running is not None:
            known = self._known
            for rows in out.values():
                known.update(rows)
            looked = self._looked.get(index)
            if looked is None:
                self._looked[index] = set(keys)
            else:
                looked.update(keys)
        pending = self._buckets(index)
        if pending:  # a state read before it is changed (a group's) has nothing to merge
            for k in set(keys):
                changes = pending.get(k)
                if changes:
                    _merge(out, k, changes)
        return out

    def by_index(self, index: Index[Any, Any], keys: Collection[Any]) -> list[tuple[Any, Any, int]]:
        """With nothing pending to merge (a cache read between iterations): identities and
        weights first, then the data of only the rows not yet decoded here, so a repeated
        read decodes nothing; sorted by the stored identities (one key: by them only)."""
        if self._pending or not keys:
            return sort_by_index(index, self.lookup(index, keys))
        found = self._by_keys(index, keys, '"identity", "c"')
        cached = self._rows.get
        if len(keys) == 1:  # one key: every row is under it, in identity order
            found.sort(key=_first_item)
            (k,) = keys
            out = []
            for i, c in found:
                row = cached(i)
                if row is None:
                    break
                out.append((k, row, c))
            else:
                return out  # every row already decoded here: the usual repeated read
        rows = {i: row for i, _ in found if (row := cached(i)) is not None}
        if len(rows) < len(found):
            rows.update(self._load_ids([i for i, _ in found if i not in rows]))
        if len(rows) < len(found):  # deleted between the two statements: one statement
            load = self._rows.load
            full = self._by_keys(index, keys, '"identity", "data", "c"')
            rows = {i: load(i, data) for i, data, _ in full}
            found = [(i, c) for i, _, c in full]
        if len(keys) == 1:
            found.sort(key=_first_item)
            return [(k, rows[i], c) for i, c in found]
        f, sort_key = index.f, index.sort_key
        keyed = []
        for i, c in found:
            row = rows[i]
            k = f(row)
            keyed.append((sort_key(k), bytes(i), k, row, c))
        keyed.sort(key=_two_items)
        return [(k, row, c) for _, _, k, row, c in keyed]

    def _by_keys(self, index: Index[Any, Any], keys: Collection[Any], columns: str) -> list[Any]:
        """`columns` of the stored rows under `keys`: one statement per parameter-limit chunk."""
        cols = self.table.columns[index]
        found: list[tuple[Any, ...]] = []
        for chunk in self._chunks(keys, len(cols)):
            cond, params = key_condition(self._store.dialect, self.table.q, cols, index, chunk)
            if cond:
                sql = f"SELECT {columns} FROM {self.table.q} WHERE {cond}"
                found.extend(self._query(sql, params))
        return found

    def _load_ids(self, ids: list[Any]) -> dict[Any, Any]:
        """The stored rows `ids` that are still there, decoded, by identity."""
        load = self._rows.load
        out: dict[Any, Any] = {}
        for chunk in self._chunks(ids, 1):
            cond, params = self._store.dialect.ids_in([bytes(i) for i in chunk])
            sql = f'SELECT "identity", "data" FROM {self.table.q} WHERE {cond}'
            out.update((i, load(i, data)) for i, data in self._query(sql, params))
        return out

    def first(
        self, ordered: Ordered, n: int, groups: Collection[Any] | None = None
    ) -> dict[Any, list[tuple[Any, int]]]:
        group = ordered.group
        if group is None or groups is None:
            return self._first(ordered, n, None)
        out: dict[Any, list[tuple[Any, int]]] = {}
        for chunk in self._chunks(groups, len(self.table.columns[group]) + 1):
            out.update(self._first(ordered, n, chunk))
        return out

    def _first(
        self, ordered: Ordered, n: int, groups: Collection[Any] | None
    ) -> dict[Any, list[tuple[Any, int]]]:
        group = ordered.group
        if group is not None and not groups:
            return {}
        pending_rows = self._pending_in(group, groups)
        found = self._first_rows(ordered, n + _most_per_group(group, pending_rows), groups)
        rows: dict[bytes, list[Any]] = {}
        for row_id, data, c in found:
            rows[bytes(row_id)] = [self._rows.load(row_id, data), c]
        for row, d in pending_rows.items():
            entry = rows.setdefault(self._rows.id(row), [row, 0])
            entry[1] += d
        return _take_first_per_group(ordered, n, rows)

    def _pending_in(
        self, group: Index[Any, Any] | None, groups: Collection[Any] | None
    ) -> dict[Any, int]:
        if group is None or groups is None:
            return self._pending
        buckets = self._buckets(group)
        return {row: d for g in groups for row, d in buckets.get(g, {}).items()}

    def _first_rows(
        self, ordered: Ordered, limit: int, groups: Collection[Any] | None
    ) -> list[tuple[Any, ...]]:
        """One statement: the first `limit` positive rows (per group) in SQL order, plus
        the stored weights of the pending rows (they may move in or out of the top)."""
        d = self._store.dialect
        t = self.table
        order_cols = t.columns[ordered.order]
        where = '"c" > 0'
        params: Params = []
        orderable = all(c.kind.orderable for c in order_cols)
        if ordered.group is not None and groups is not None and not orderable:
            cond, params = key_condition(d, t.q, t.columns[ordered.group], ordered.group, groups)
            if not cond:  # no stored row can be in these groups, a pending row's included
                return []
            where += f" AND ({cond})"
        select = f'SELECT "identity", "data", "c" FROM {t.q}'
        if not orderable:
            top = f"{select} WHERE {where}"
        elif ordered.group is not None and groups is not None:
            top, params = self._first_per_group(ordered.group, order_cols, limit, groups)
            if not top:  # no stored row can be in these groups, a pending row's included
                return []
        else:
            order = ", ".join([*(d.order_term(c.q, c.ascending) for c in order_cols), '"identity"'])
            if ordered.group is None:
                top = f"SELECT * FROM ({select} WHERE {where} ORDER BY {order} LIMIT {d.ph}) AS a"
            else:  # every group: a window over the table, which is read whole anyway
                part = ", ".join(c.q for c in t.columns[ordered.group])
                top = (
                    f'SELECT "identity", "data", "c" FROM (SELECT "identity", "data", "c", '
                    f"ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {order}) AS rn "
                    f"FROM {t.q} WHERE {where}) AS w WHERE rn <= {d.ph}"
                )
            params = [*params, limit]
        pending_ids = [self._rows.id(row) for row in self._pending_in(ordered.group, groups)]
        if pending_ids:
            cond, more = d.ids_in(pending_ids)
            top = f"{top} UNION ALL {select} WHERE {cond}"
            params = [*params, *more]
        return self._query(top, params)

    def _first_per_group(
        self,
        group: Index[Any, Any],
        order_cols: Sequence[Column],
        limit: int,
        groups: Collection[Any],
    ) -> tuple[str, Params]:
        """The first `limit` positive rows of each of `groups` in one statement ("" when no
        stored row can be under any), each group read from the table's first index up to
        `limit` entries (`Dialect.first_per_key`), so a group of a million rows costs its
        first `limit`, not a million.

        Keys are split by which parts are None (`_encode_keys`): a NULL never equals, so
        those parts are matched with IS NULL, which the index answers as an equality; a
        key of None parts only is one ordered read up to LIMIT."""
        d, t = self._store.dialect, self.table
        cols = t.columns[group]
        order = ", ".join(
            [*(d.order_term(f"r.{c.q}", c.ascending) for c in order_cols), 'r."identity"']
        )
        branches: list[str] = []
        params: Params = []
        for pattern, values in _encode_keys(cols, group, groups).items():
            where = " AND ".join(
                [*(f"r.{c.q} IS NULL" for c, null in zip(cols, pattern) if null), 'r."c" > 0']
            )
            live = [c for c, null in zip(cols, pattern) if not null]
            if live:
                keys = list(dict.fromkeys(values))
                sql, more = d.first_per_key(t.q, live, keys, where, order, limit)
            else:
                sql = (
                    f'SELECT * FROM (SELECT r."identity", r."data", r."c" FROM {t.q} AS r '
                    f"WHERE {where} ORDER BY {order} LIMIT {d.ph}) AS n"
                )
                more = [limit]
            branches.append(sql)
            params.extend(more)
        return " UNION ALL ".join(branches), params

    def zset(self) -> ZSetPython[Any]:
        found = self._query(f'SELECT "identity", "data", "c" FROM {self.table.q}', [])
        load = self._rows.load
        out = {load(row_id, data): c for row_id, data, c in found}
        for row, d in self._pending.items():
            n = out.get(row, 0) + d
            if n:
                out[row] = n
            else:
                del out[row]
        return ZSetPython.wrap(out)

    def flush(self) -> None:
        """Write the pending changes: one upsert of the rows that stay, one delete of the
        rows whose weight reached 0.

        A row whose stored weight this iteration has read (`_known`) is deleted outright
        when it reaches 0, and upserted otherwise; the other rows go through
        `upsert_settling`, which deletes those stored at minus their change and upserts
        the rest, so a retraction costs a delete, not a write and a delete. Where the
        dialect updates in place, a row leaving under a key while a new one arrives
        under the same key (a group's total, replaced) is one update of the stored row."""
        if not self._pending:
            self.forget_reads()
            return
        d = self._store.dialect
        conn = self._store.conn
        known = self._known
        replaced = self._note_looked_up()
        encode, id_ = self._encode, self._rows.id
        if replaced:  # the key columns stay: only the identity and data are needed
            d.replace(conn, self.table, self._rows.replacements(replaced, d.blob_param))
        sure, unsure, leaving = _split_pending(self._pending, known)
        if sure:
            d.upsert(conn, self.table, [encode(row, c) for row, c in sure])
        if unsure:
            d.upsert_settling(conn, self.table, unsure, encode, id_)
        gone = [id_(row) for row in leaving]
        for chunk in self._chunks(gone, 1) if gone else ():
            cond, params = d.ids_in(chunk)
            d.execute(conn, f"DELETE FROM {self.table.q} WHERE {cond}", params)
        self.drop_pending()

    def _note_looked_up(self) -> list[tuple[Any, Any, int]]:
        """Record as stored at 0 the pending rows under looked-up keys that were not found;
        where the table can be updated in place, take out of `pending` and return the
        (stored row leaving, new row, its weight) pairs that share their key."""
        known, pending = self._known, self._pending
        in_place = self.table.in_place_index
        replaced: list[tuple[Any, Any, int]] = []
        for ix, keys in self._looked.items():
            _note_keys(keys, self._buckets(ix), known, ix == in_place, replaced)
        for old, new, _ in replaced:
            del pending[old], pending[new]
        return replaced

    def _encode(self, row: Any, c: int) -> tuple[Any, ...]:
        """`row`'s write parameters (`Table.write_row`), encoding it at most once."""
        rid, data = self._rows.id_and_data(row)
        return self.table.write_row(row, rid, c, data)

    def forget_reads(self) -> None:
        if self._known or self._looked:
            self._known = {}
            self._looked = {}

    def drop_pending(self) -> None:
        self._pending = {}
        self._pending_by = {}
        self.forget_reads()


_first_item = operator.itemgetter(0)
_two_items = operator.itemgetter(0, 1)

Buckets = dict[Any, dict[Any, int]]


def _split_pending_py(
    pending: dict[Any, int], known: dict[Any, int]
) -> tuple[Changes, Changes, list[Any]]:
    """A flush's pending rows: those whose stored weight is known and whose new weight is not
    0, those whose stored weight is not known, and the known rows whose weight reaches 0."""
    sure: Changes = []
    unsure: Changes = []
    gone: list[Any] = []
    for row, c in pending.items():
        stored = known.get(row)
        if stored is None:
            unsure.append((row, c))
        elif stored + c:
            sure.append((row, c))
        elif stored:
            gone.append(row)
    return sure, unsure, gone


def _note_keys_py(
    keys: Iterable[Any],
    buckets: Buckets,
    known: dict[Any, int],
    pairing: bool,
    replaced: list[tuple[Any, Any, int]],
) -> None:
    """`_note_looked_up` for one index's looked-up `keys` and its pending `buckets`."""
    for k in keys:
        b = buckets.get(k)
        if not b:
            continue
        for row in b:
            if row not in known:
                known[row] = 0  # under a looked-up key, not stored
        if pairing and len(b) == 2:
            (r1, c1), (r2, c2) = b.items()
            if known[r1] == -c1 and not known[r2]:
                replaced.append((r1, r2, c2))
            elif known[r2] == -c2 and not known[r1]:
                replaced.append((r2, r1, c1))


def _file_py(buckets: Buckets, f: Callable[[Any], Any], items: dict[Any, int]) -> None:
    """Add the weights of `items` to `buckets`, under each row's key `f(row)`."""
    for row, c in items.items():
        k = f(row)
        b = buckets.get(k)
        if b is None:
            buckets[k] = {row: c}
            continue
        n = b.get(row, 0) + c
        if n:
            b[row] = n
        else:
            del b[row]
            if not b:
                del buckets[k]


#: The two loops above in C where the C module is built (each row and key hashed once per
#: step instead of at every dict operation); the Python functions are the reference.
_file: Callable[[Buckets, Callable[[Any], Any], dict[Any, int]], None] = (
    _file_py if speedups is None else speedups.file_weights
)
_split_pending: Callable[[dict[Any, int], dict[Any, int]], tuple[Changes, Changes, list[Any]]] = (
    _split_pending_py if speedups is None else speedups.split_pending
)
_note_keys: Callable[
    [Iterable[Any], Buckets, dict[Any, int], bool, list[tuple[Any, Any, int]]], None
] = _note_keys_py if speedups is None else speedups.note_keys


def _merge(out: dict[Any, dict[Any, int]], key: Any, changes: dict[Any, int]) -> None:
    bucket = out.get(key)
    if bucket is None:
        bucket = out[key] = {}
    for row, d in changes.items():
        n = bucket.get(row, 0) + d
        if n:
            bucket[row] = n
        else:
            del bucket[row]
    if not bucket:
        del out[key]


def _most_per_group(group: Index[Any, Any] | None, rows: dict[Any, int]) -> int:
    """The most pending rows in any one group: the top may lose at most that many."""
    if group is None:
        return len(rows)
    counts: dict[Any, int] = {}
    f = group.f
    for row in rows:
        k = f(row)
        counts[k] = counts.get(k, 0) + 1
    return max(counts.values(), default=0)


def _take_first_per_group(
    ordered: Ordered, n: int, rows: dict[bytes, list[Any]]
) -> dict[Any, list[tuple[Any, int]]]:
    order_f, sort_key = ordered.order.f, ordered.order.sort_key
    group_f = ordered.group.f if ordered.group is not None else None
    per_group: dict[Any, list[tuple[Any, bytes, Any, int]]] = {}
    for row_id, (row, c) in rows.items():
        if c > 0:
            g = group_f(row) if group_f is not None else None
            per_group.setdefault(g, []).append((sort_key(order_f(row)), row_id, row, c))
    out = {}
    for g, entries in per_group.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        out[g] = take_first(((row, c) for _, _, row, c in entries), n)
    return out


# -- the store --------------------------------------------------------------------------


class StoreSQL:
    """States in SQL tables on one DB-API connection; see the module docstring.

    Transactions (`Time.flush_every_set`):
    - False: `commit(time)` writes every pending change and records `input_time` in
      `last_update` for every table of the store, in one transaction. A failure anywhere
      in the iteration rolls it all back: tables and `last_update` are exactly as before,
      and the same change can simply be retried.
    - True: `after_set` writes and commits a vertex's tables as soon as it is done with
      them, so the next time's iteration can start on them (pipelining). Not atomic: if the
      iteration then fails, the tables already committed hold this time's changes and the
      rest do not, and the later times waiting on those tables time out. A caller that sees
      such a failure must treat the store as broken: rebuild it from the inputs (fresh
      tables, replayed with flush_every_set=False) rather than retrying the change, which
      would apply it twice to the committed tables. Use it for bulk loads you can redo.
    - None: nothing is written; pending changes accumulate until the caller's
      `commit(time)`.

    With `owns_transaction=False` the store never commits or rolls back the connection:
    `commit(time)` and `after_set` only write, and the caller (e.g. Django's
    `transaction.atomic()`) decides. `rollback()` then only drops the pending changes.
    Waiting for a frontier inside the caller's transaction works on Postgres (each
    statement sees other commits) but not on SQLite, whose transaction keeps reading the
    snapshot of its first read: wait (or check `last_update`) before opening it there.
    """

    dialect: Dialect = Dialect()

    def __init__(self, conn: Any, *, owns_transaction: bool = True) -> None:
        self.dialect.check_connection(conn, owns_transaction)
        self.dialect = self.dialect.prepare(conn)
        self.conn = conn
        self.owns_transaction = owns_transaction
        self._states: dict[str, SQLState] = {}
        self._reached: dict[str, int] = {}
        self._set_times: set[str] = set()
        #: The time of the iteration under way, and the latest time this store has
        #: applied but not committed (flush_every_set=None): its own pending changes
        #: already hold that time, so reading never waits for it.
        self._running: int | None = None
        self._applied = -1
        #: The pipeline open for the iteration under way (see `begin`), if any, and whether
        #: writes went out through it before the commit.
        self._pipeline: AbstractContextManager[Any] | None = None
        self._sent = False

    @classmethod
    def from_graph(
        cls, conn: Any, graph: Any, create_tables: bool, *, owns_transaction: bool = True
    ) -> Self:
        """A store for `graph`'s states: create their tables (idempotently) or attach to
        existing ones, failing at once, naming the table, when one is missing."""
        store = cls(conn, owns_transaction=owns_transaction)
        states = [store.state(spec) for spec in graph.states]
        if create_tables:
            store.create_tables(states)
        store.check_tables(states)
        return store

    def state(self, spec: StateSpec) -> SQLState:
        s = self._states.get(spec.name)
        if s is None:
            s = self._states[spec.name] = SQLState(self, spec)
        return s

    def view(self, spec: StateSpec) -> StateView:
        return StateView(self.state(spec))

    def create_tables(self, states: Sequence[SQLState]) -> None:
        d = self.dialect
        self._begin()
        d.lock_for_ddl(self.conn)
        for sql in d.last_update_ddl():
            d.execute(self.conn, sql)
        for s in states:
            for sql in s.table.ddl():
                d.execute(self.conn, sql)
            d.execute(
                self.conn,
                f"INSERT INTO last_update (table_name, t) VALUES ({d.ph}, 0) "
                "ON CONFLICT (table_name) DO NOTHING",
                [s.table.name],
            )
        self._commit()

    def check_tables(self, states: Sequence[SQLState]) -> None:
        """Fail now, naming what is missing, rather than at the first iteration."""
        names = [s.table.name for s in states]
        found = self.dialect.existing_columns(self.conn, [*names, "last_update"])
        if "last_update" not in found:
            raise MissingTable(
                "table last_update does not exist: create it with create_tables=True"
            )
        times = self.dialect.read_times(self.conn, names)
        for s in states:
            name = s.table.name
            if name not in found:
                raise MissingTable(
                    f"table {name!r} does not exist: create it with create_tables=True "
                    "(its name changes when the query upstream of it changes)"
                )
            missing = s.table.column_names() - found[name]
            if missing:
                raise MissingTable(f"table {name!r} lacks columns {sorted(missing)}")
            if name not in times:
                raise MissingTable(f"last_update has no row for table {name!r}")
        indexed = self.dialect.with_extra_indexes(self.conn, [s.table for s in states])
        for s in states:
            s.table.extra_indexed = s.table.name in indexed

    # -- the Store protocol ---------------------------------------------------------------

    def begin(self, time: Time) -> None:
        """An iteration starts; the previous one, if not rolled back, has completed."""
        if self._running is not None:
            self._applied = max(self._applied, self._running)
        self._running = time.input_time
        self._set_times = set()
        if time.flush_every_set is False and self.owns_transaction and self.dialect.pipelines:
            # One transaction either way; each state's writes are sent when its vertex is
            # done with it (`after_set`), so the server works while the next vertices run.
            # Reads in between wait for what was sent before them, as without a pipeline.
            self._pipeline = self.dialect.batch(self.conn)
            self._pipeline.__enter__()

    def before_read(self, states: tuple[Any, ...], time: Time) -> None:
        if time.frontier < 0 or self._applied >= time.frontier:
            return
        names = [
            s.table.name for s in states if self._reached.get(s.table.name, -1) < time.frontier
        ]
        if names:
            seen = wait_for_frontier(
                lambda: self.dialect.read_times(self.conn, names), names, time.frontier
            )
            self._reached.update(seen)

    def after_set(self, states: tuple[Any, ...], time: Time) -> None:
        if time.flush_every_set is True:
            self._write(list(states), time)
        elif self._pipeline is not None:
            for s in states:
                self._sent = self._sent or s.has_pending
                s.flush()

    def commit(self, time: Time) -> None:
        self._write([s for s in self._states.values() if s.table.name not in self._set_times], time)
        self._end_pipeline(None)
        for s in self._states.values():
            s.forget_reads()
        self._set_times = set()
        self._running = None
        self._applied = -1

    def rollback(self) -> None:
        """Drop every pending change (also those of earlier flush_every_set=None
        iterations) and roll back the connection's transaction when the store owns it."""
        for s in self._states.values():
            s.drop_pending()
        self._set_times = set()
        self._running = None
        self._applied = -1
        if self.owns_transaction:
            self._end_pipeline(RuntimeError("rolled back"))
            self.dialect.rollback(self.conn)

    def _end_pipeline(self, error: BaseException | None) -> None:
        """Close the iteration's pipeline: wait for the server (raising its error) after a
        commit; after a failure, only leave pipeline mode, so the rollback can run."""
        pipeline, self._pipeline = self._pipeline, None
        self._sent = False
        if pipeline is None:
            return
        if error is None:
            pipeline.__exit__(None, None, None)
            return
        try:
            pipeline.__exit__(type(error), error, None)
        except Exception:  # the server's error for what was sent: the rollback follows
            pass

    def _write(self, states: list[SQLState], time: Time) -> None:
        """Flush `states`, record the time they reached, and commit: one transaction."""
        timed = time.input_time != -1 and bool(states)
        if not timed and not self._sent and not any(s.has_pending for s in states):
            return
        # Inside the iteration's pipeline already: a nested one would first wait for
        # everything sent so far (psycopg syncs on entering it), before these writes go out.
        batch = self.dialect.batch(self.conn) if self._pipeline is None else nullcontext()
        with batch:
            self._begin()
            for s in states:
                s.flush()
            if timed:
                names = [s.table.name for s in states]
                self.dialect.set_times(self.conn, names, time.input_time)
                self._set_times.update(names)
            self._commit()

    def _begin(self) -> None:
        if self.owns_transaction:
            self.dialect.begin_write(self.conn)

    def _commit(self) -> None:
        if self.owns_transaction:
            self.dialect.commit(self.conn)
