"""The engine store on Django's own connection, so view tables share the project's
transactions.

An iteration runs inside the applier's `transaction.atomic()` on `connections[using]`,
with the engine's SQL store for the connection's vendor (`st.StoreSQLite` on the raw
sqlite3 connection, `st.StorePostgres` on the raw psycopg one) and
`owns_transaction=False`: the store writes but never commits or rolls back, so its table
writes, the output cache, the snapshots and the deletion of the applied outbox rows
commit together or not at all.

A parallel view's iterations (pipeline.py) run instead on a store with a connection of
its own (`pipeline_store`), which commits each table as its vertex finishes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.db import connections

from stepping_django import engine as st

if TYPE_CHECKING:
    from stepping_django.declare import IncrementalView

_STORES: dict[str, Any] = {"sqlite": st.StoreSQLite, "postgresql": st.StorePostgres}


class UnsupportedDatabase(RuntimeError):
    """Views need SQLite or Postgres."""


def tagged_name(view: IncrementalView, name: str, tag: str) -> str:
    """The table of state `name` in the tables tagged `tag` ("": the first build's tables,
    named as the graph names them; another tag goes after the view's prefix)."""
    if not tag:
        return name
    return view.table_prefix + tag + "_" + name[len(view.table_prefix) :]


_TAGGED: dict[tuple[Any, str, str], Any] = {}


def _store_class(view: IncrementalView, base: Any, tag: str) -> Any:
    if not tag:
        return base
    key = (base, view.table_prefix, tag)
    cls = _TAGGED.get(key)
    if cls is None:

        def state(self: Any, spec: Any) -> Any:
            return base.state(self, replace(spec, name=tagged_name(view, spec.name, tag)))

        cls = _TAGGED[key] = type(f"{base.__name__}_{tag}", (base,), {"state": state})
    return cls


def django_store(
    view: IncrementalView, using: str, create_tables: bool = False, tag: str = ""
) -> Any:
    """A store for `view`'s graph on `connections[using]`, inside the current transaction,
    over the tables tagged `tag` (see `tagged_name`)."""
    assert view.graph is not None
    connection = connections[using]
    try:
        base = _STORES[connection.vendor]
    except KeyError:
        raise UnsupportedDatabase(
            f"view {view.label}: database {using!r} is {connection.vendor}; incremental views "
            "run on SQLite or PostgreSQL"
        ) from None
    connection.ensure_connection()
    cls = _store_class(view, base, tag)
    return cls.from_graph(connection.connection, view.graph, create_tables, owns_transaction=False)


def pipeline_store(view: IncrementalView, conn: Any, tag: str) -> Any:
    """A Postgres store for `view`'s tables tagged `tag` on `conn`, a connection of its
    own that the store commits (pipeline.py: each table is committed as soon as its vertex
    is done, for the next batch to start on it)."""
    assert view.graph is not None
    cls = _store_class(view, st.StorePostgres, tag)
    return cls.from_graph(conn, view.graph, create_tables=False)


def drop_tables(using: str, names: list[str]) -> None:
    """Drop tables `names` and forget their times, where they exist."""
    connection = connections[using]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP TABLE IF EXISTS {qn(name)}")
        if "last_update" in connection.introspection.table_names(cursor) and names:
            marks = ", ".join(["%s"] * len(names))
            cursor.execute(f"DELETE FROM last_update WHERE table_name IN ({marks})", names)
