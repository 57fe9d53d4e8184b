"""Capture inside the database, on Postgres: statement triggers on each table a view reads
write that view's outbox rows within the writer's own statement.

A captured write then costs no round trip of its own (the INSERT of its keys was one
more statement per write), and the writes Django sends no signal for are captured as
well: raw SQL, `QuerySet.update` without `StepManager`, the updates of
`on_delete=SET_NULL`, and TRUNCATE (which captures "any row").

`migrate` installs them (post_migrate, `install`) for the views of the migrating process.
A table's four triggers (INSERT, UPDATE, DELETE, TRUNCATE) call functions whose names
carry a digest of what they write (table, model, pk column, view labels), so a process
reads from the catalog whether the installed triggers capture exactly its own views of a
model (`captures`). When they do, its signals only schedule the apply; when they do not
(another version of the code, a model added since the last migrate, a primary key whose
text form could differ from Python's, another database), it inserts the outbox rows
itself, as on SQLite, and looks again after RECHECK_SECS. A key captured by both is
applied once.

Triggers follow `session_replication_role`: a session in `replica` mode (pg_restore's
data-only restores, some replication tools) writes without capture, as it writes
without foreign key checks; call `stepping_django.notify(Model)` or `manage.py stepping
rebuild` after such a load.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from stepping_django import conf
from stepping_django.models import Outbox

logger = logging.getLogger("stepping_django")

#: The prefix of every trigger and trigger function this module makes.
PREFIX = "stepping_capture_"
#: Primary key types whose Postgres text form (`pk::text`) is Python's `str(pk)`, the form
#: the outbox and the snapshots key rows by.
TEXT_SAFE_PKS = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
        "CharField",
        "TextField",
        "SlugField",
        "EmailField",
        "UUIDField",
    }
)
#: Trigger event -> (transition tables clause, the keys it captures).
_EVENTS = {
    "ins": ("REFERENCING NEW TABLE AS stepping_new", "SELECT {pk} FROM stepping_new"),
    "upd": (
        "REFERENCING OLD TABLE AS stepping_old NEW TABLE AS stepping_new",
        "SELECT {pk} FROM stepping_new UNION SELECT {pk} FROM stepping_old",
    ),
    "del": ("REFERENCING OLD TABLE AS stepping_old", "SELECT {pk} FROM stepping_old"),
    "trunc": ("", ""),
}
_SQL_EVENT = {"ins": "INSERT", "upd": "UPDATE", "del": "DELETE", "trunc": "TRUNCATE"}


@dataclass(frozen=True)
class TriggerSpec:
    """The triggers that capture `views` for `model`'s table."""

    table: str
    model: str
    pk_column: str
    views: tuple[str, ...]

    @property
    def digest(self) -> str:
        text = "\0".join((self.table, self.model, self.pk_column, *self.views))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def function(self, event: str) -> str:
        return f"{PREFIX}{self.digest}_{event}"


@functools.lru_cache(maxsize=1024)
def spec_for(model: type[models.Model], views: tuple[str, ...]) -> TriggerSpec | None:
    """The triggers capturing `views` for `model` (a concrete model), or None when they
    would not capture all its changes (a multi-table child) or its primary key's text form
    in Postgres could differ from Python's (`pk::text` and `str(pk)` naming one row twice)."""
    if model._meta.parents:
        # A multi-table child's rows change with its parents' tables too, whose triggers
        # name the parent: its signals capture it.
        return None
    pk = model._meta.pk
    assert pk is not None
    if pk.get_internal_type() not in TEXT_SAFE_PKS:
        return None
    names = (model._meta.db_table, model._meta.label, pk.column, *views)
    if any("$" in name for name in names):  # the functions' bodies are dollar-quoted
        return None
    return TriggerSpec(model._meta.db_table, model._meta.label, pk.column, views)


# -- at write time --------------------------------------------------------------------------

#: A process that found no triggers for its views asks again after this many seconds
#: (code deployed before `migrate` ran), so it stops inserting keys itself soon after.
RECHECK_SECS = 60.0
#: (database alias, function prefix) -> (whether those triggers are installed, when asked).
_installed: dict[tuple[str, str], tuple[bool, float]] = {}
#: Counts `forget` calls, so that what callers derived from `captures` is recomputed.
generation = 0


def captures(connection: BaseDatabaseWrapper, model: type[models.Model], views: list[str]) -> bool:
    """Whether triggers on `connection` write the outbox rows of `views` for `model`'s rows
    (asked of the catalog once per process, database and set of views; a "no" again after
    RECHECK_SECS)."""
    if connection.vendor != "postgresql" or not conf.database_triggers():
        return False
    spec = spec_for(model, tuple(sorted(views)))
    if spec is None:
        return False
    key = (connection.alias, spec.digest)
    known = _installed.get(key)
    now = time.monotonic()
    if known is None or (not known[0] and now - known[1] >= RECHECK_SECS):
        known = _installed[key] = (installed(connection, spec), now)
    return known[0]


def installed(connection: BaseDatabaseWrapper, spec: TriggerSpec) -> bool:
    """Whether `spec`'s triggers are on its table, enabled (asks the catalog)."""
    return _count(connection, spec) == len(_EVENTS)


def forget() -> None:
    """Ask the catalog again at the next write (the triggers were changed by hand, or by a
    transaction that rolled back)."""
    global generation
    _installed.clear()
    generation += 1


def _count(connection: BaseDatabaseWrapper, spec: TriggerSpec) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = to_regclass(%s) AND t.tgenabled <> 'D'"
            " AND p.proname = ANY(%s)",
            [connection.ops.quote_name(spec.table), [spec.function(e) for e in _EVENTS]],
        )
        return int(cursor.fetchone()[0])


# -- installing -----------------------------------------------------------------------------


def wanted(using: str) -> list[TriggerSpec]:
    """The triggers the views of this process want on database `using`."""
    from stepping_django.registry import registry

    connection = connections[using]
    tables = set(connection.introspection.table_names())
    out = []
    for model in sorted(registry.models(), key=lambda m: m._meta.label):
        if model._meta.db_table not in tables or not router.allow_migrate_model(using, model):
            continue
        views = tuple(sorted(v.label for v in registry.reading(model)))
        spec = spec_for(model, views)
        if spec is None:
            logger.info(
                "stepping_django: %s is captured by its signals, not by triggers (a "
                "multi-table child, or a primary key whose text form may differ between "
                "Postgres and Python)",
                model._meta.label,
            )
            continue
        out.append(spec)
    return out


def install(using: str) -> list[TriggerSpec]:
    """Make the capture triggers on database `using` those of this process's views: create
    the missing ones, replace those of other view sets, drop those no view wants. Returns
    the specs installed. A table that refuses triggers (not its owner, a database view) is
    logged and left to signal capture."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    specs = wanted(using) if conf.database_triggers() else []
    done = []
    with transaction.atomic(using=using):
        _drop_unwanted(connection, {s.table for s in specs})
        for spec in specs:
            if installed(connection, spec):  # no DDL, no table lock, at every migrate
                done.append(spec)
                continue
            try:
                with transaction.atomic(using=using):
                    _install_one(connection, spec)
            except Exception as exc:  # noqa: BLE001  the table keeps signal capture
                logger.warning(
                    "stepping_django: cannot install the capture triggers of %s on %s (%s);"
                    " its writes are captured by signals",
                    spec.model,
                    spec.table,
                    exc,
                )
            else:
                done.append(spec)
        _drop_unused_functions(connection)
    forget()
    return done


def uninstall(using: str) -> None:
    """Drop every capture trigger and function of this app on database `using`."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(using=using):
        _drop_unwanted(connection, set())
        _drop_unused_functions(connection)
    forget()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _install_one(connection: BaseDatabaseWrapper, spec: TriggerSpec) -> None:
    qn = connection.ops.quote_name
    table, outbox = qn(spec.table), qn(Outbox._meta.db_table)
    views = ", ".join(f"({_literal(v)})" for v in spec.views)
    columns = ", ".join(qn(c) for c in ("view", "model", "object_pk"))
    with connection.cursor() as cursor:
        for event, (referencing, keys) in _EVENTS.items():
            source = (
                "(SELECT NULL::text) AS k(pk)"
                if not keys
                else "(" + keys.format(pk=qn(spec.pk_column) + "::text") + ") AS k(pk)"
            )
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {qn(spec.function(event))}() RETURNS trigger"
                " LANGUAGE plpgsql AS $stepping$ BEGIN"
                f" INSERT INTO {outbox} ({columns})"
                f" SELECT v.view, {_literal(spec.model)}, k.pk"
                f" FROM {source} CROSS JOIN (VALUES {views}) AS v(view);"
                " RETURN NULL; END $stepping$"
            )
            trigger = qn(f"{PREFIX}{event}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            cursor.execute(
                f"CREATE TRIGGER {trigger} AFTER {_SQL_EVENT[event]} ON {table} {referencing}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {qn(spec.function(event))}()"
            )


def _drop_unwanted(connection: BaseDatabaseWrapper, keep: set[str]) -> None:
    """Drop this app's triggers on every table not in `keep`."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(current_schemas(false)) AND t.tgname LIKE %s",
            [PREFIX.replace("_", r"\_") + "%"],
        )
        for table, trigger in cursor.fetchall():
            if table not in keep:
                cursor.execute(f"DROP TRIGGER IF EXISTS {qn(trigger)} ON {qn(table)}")


def _drop_unused_functions(connection: BaseDatabaseWrapper) -> None:
    """Drop this app's trigger functions that no trigger calls any more."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = ANY(current_schemas(false)) AND p.proname LIKE %s"
            " AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid)",
            [PREFIX.replace("_", r"\_") + "%"],
        )
        for (function,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {qn(function)}()")
