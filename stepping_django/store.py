"""The engine store on Django's own connection, so view tables share the project's
transactions.

An iteration runs inside the applier's `transaction.atomic()` on `connections[using]`,
with the engine's SQL store for the connection's vendor (`st.StoreSQLite` on the raw
sqlite3 connection, `st.StorePostgres` on the raw psycopg one) and
`owns_transaction=False`: the store writes but never commits or rolls back, so its table
writes, the output cache, the snapshots and the deletion of the applied outbox rows
commit together or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections

from stepping_django import engine as st

if TYPE_CHECKING:
    from stepping_django.declare import IncrementalView

_STORES: dict[str, Any] = {"sqlite": st.StoreSQLite, "postgresql": st.StorePostgres}


class UnsupportedDatabase(RuntimeError):
    """Views need SQLite or Postgres."""


def django_store(view: IncrementalView, using: str, create_tables: bool = False) -> Any:
    """A store for `view`'s graph on `connections[using]`, inside the current transaction."""
    assert view.graph is not None
    connection = connections[using]
    try:
        cls = _STORES[connection.vendor]
    except KeyError:
        raise UnsupportedDatabase(
            f"view {view.label}: database {using!r} is {connection.vendor}; incremental views "
            "run on SQLite or PostgreSQL"
        ) from None
    connection.ensure_connection()
    return cls.from_graph(connection.connection, view.graph, create_tables, owns_transaction=False)


def drop_tables(view: IncrementalView, using: str) -> None:
    """Drop `view`'s delay-vertex tables and forget their times, if they exist."""
    assert view.graph is not None
    connection = connections[using]
    qn = connection.ops.quote_name
    names = [s.name for s in view.graph.states]
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP TABLE IF EXISTS {qn(name)}")
        if "last_update" in connection.introspection.table_names(cursor) and names:
            marks = ", ".join(["%s"] * len(names))
            cursor.execute(f"DELETE FROM last_update WHERE table_name IN ({marks})", names)
