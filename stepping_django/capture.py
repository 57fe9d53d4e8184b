"""Change capture: the keys (model, pk) of written rows go to each reading view's outbox,
in the writer's transaction; when it commits, the views are applied (EAGER) or a Celery
task is sent.

- `post_save` / `post_delete` signals cover `save()`, `create()`, `delete()` and
  `QuerySet.delete()` (Django sends the delete signals per row, cascades included, for
  models that have receivers).
- `StepQuerySet` / `StepManager` cover the writes that send no signal: `QuerySet.update`,
  `bulk_create`, and `bulk_update` (which Django runs as `QuerySet.update`).
- `notify(Model, pks)` covers raw SQL.
- `pre_delete` of a model that watched rows point to with `on_delete=SET_NULL`,
  `SET_DEFAULT` or `SET(...)` captures those rows: Django then updates them without signals.

Only keys are captured, never rows: applying reads the current rows, so a rolled-back
writer leaves nothing behind and the order of captures does not matter.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_delete, post_save, pre_delete

from stepping_django import conf, triggers
from stepping_django.models import Outbox

try:
    import psycopg
    import psycopg.errors
    import psycopg.pq
except ImportError:  # psycopg2 or another backend: Django's cursor
    psycopg = None  # type: ignore[assignment]

logger = logging.getLogger("stepping_django")

_connected: set[type[models.Model]] = set()


#: `_watched` per model, until the registry changes (`views_changed`).
_watched_cache: dict[type[models.Model], list[tuple[type[models.Model], list[str]]]] = {}


def views_changed() -> None:
    """Forget what `_watched` and `_plan` knew: a view was registered or unregistered."""
    _watched_cache.clear()
    _plans.clear()


def _watched(model: type[models.Model]) -> list[tuple[type[models.Model], list[str]]]:
    """(model, reading view labels) for `model` and its concrete parents that views read."""
    out = _watched_cache.get(model)
    if out is not None:
        return out
    from stepping_django.registry import registry

    meta = model._meta
    out = []
    for m in dict.fromkeys((meta.concrete_model, *meta.get_parent_list())):
        if m is None:
            continue
        labels = [v.label for v in registry.reading(m)]
        if labels:
            out.append((m, labels))
    _watched_cache[model] = out
    return out


@dataclass(frozen=True)
class _Plan:
    """What capturing a write of one model on one database does."""

    #: The views to apply when the transaction commits.
    labels: frozenset[str]
    #: The (model, view labels) whose keys `capture` inserts: those no trigger captures.
    inserted: list[tuple[type[models.Model], list[str]]]


#: Per (model, database alias, DATABASE_TRIGGERS): the plan and until when it holds (the
#: views or triggers changing end it sooner).
_plans: dict[tuple[type[models.Model], str, bool], tuple[_Plan, float]] = {}
_plans_generation = -1


def _plan(model: type[models.Model], using: str) -> _Plan:
    global _plans_generation
    if _plans_generation != triggers.generation:  # installed, dropped or forgotten since
        _plans.clear()
        _plans_generation = triggers.generation
    key = (model, using, conf.database_triggers())
    cached = _plans.get(key)
    now = time.monotonic()
    if cached is not None and now < cached[1]:
        return cached[0]
    watched = _watched(model)
    connection = connections[using]
    plan = _Plan(
        labels=frozenset(label for _, labels in watched for label in labels),
        inserted=[
            (m, labels) for m, labels in watched if not triggers.captures(connection, m, labels)
        ],
    )
    # Keys inserted here on Postgres: ask again later whether triggers were installed since.
    recheck = plan.inserted and connection.vendor == "postgresql" and key[2]
    _plans[key] = (plan, now + triggers.RECHECK_SECS if recheck else float("inf"))
    return plan


def capture(
    model: type[models.Model], pks: Iterable[Any] | None, using: str, *, insert: bool = False
) -> None:
    """Record that rows `pks` of `model` (None: any row) may have changed, in the current
    transaction on `using`, and apply the reading views once it commits. The keys are
    inserted here unless the database's triggers capture them (`insert`: always)."""
    plan = _plan(model, using)
    if not plan.labels:
        return
    keys: list[str | None] = [None] if pks is None else [str(pk) for pk in dict.fromkeys(pks)]
    if not keys:
        return
    inserted = _watched(model) if insert or pks is None else plan.inserted
    if inserted:
        rows = [
            (label, m._meta.label, key)
            for m, labels in inserted
            for label in labels
            for key in keys
        ]
        _insert(rows, using)
    _schedule(plan.labels, using)


def _insert(rows: list[tuple[str, str, str | None]], using: str) -> None:
    """INSERT the outbox rows, 250 per statement: plain SQL, as this runs in every captured
    write (`created_at` is the database's default, its clock at the INSERT)."""
    connection = connections[using]
    for i in range(0, len(rows), 250):
        chunk = rows[i : i + 250]
        _execute(connection, _insert_sql(connection, len(chunk)), [v for row in chunk for v in row])


_insert_sqls: dict[tuple[str, int], str] = {}


def _insert_sql(connection: BaseDatabaseWrapper, n: int) -> str:
    """The INSERT of `n` outbox rows, built once per database vendor and `n`."""
    sql = _insert_sqls.get((connection.vendor, n))
    if sql is None:
        qn = connection.ops.quote_name
        columns = ", ".join(qn(c) for c in ("view", "model", "object_pk"))
        values = ", ".join(["(%s, %s, %s)"] * n)
        sql = f"INSERT INTO {qn(Outbox._meta.db_table)} ({columns}) VALUES {values}"
        _insert_sqls[(connection.vendor, n)] = sql
    return sql


def _execute(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> None:
    """Run `sql` as Django's cursor would; on psycopg 3 inside a transaction, when no one
    watches the queries (DEBUG's query log, `assertNumQueries`, execute_wrappers), through
    libpq directly (`_execute_libpq`): the cursor layers of psycopg and Django cost the
    writer about 20 us of CPU per write on top of libpq's own."""
    raw = connection.connection  # None until connected: Django's cursor connects
    if (
        psycopg is not None
        and isinstance(raw, psycopg.Connection)
        # Not yet in a transaction: psycopg's cursor sends the BEGIN the write needs.
        and raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        and not (connection.queries_logged or connection.execute_wrappers)
    ):
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors, raw.lock:
            _execute_libpq(raw, sql, params)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


#: The names of the statements prepared on each psycopg connection.
_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
#: libpq's form of each statement ($n placeholders) and its prepared statement's name.
_libpq_sqls: dict[str, tuple[bytes, bytes]] = {}


def _execute_libpq(raw: Any, sql: str, params: list[str | None]) -> None:
    """Run `sql` (%s placeholders, text parameters) in one libpq call. Prepared once per
    connection when the connection allows prepared statements (DATABASES OPTIONS
    `prepare_threshold` set; Django's default None keeps them off, for poolers), which
    spares the server parsing and planning it at every write."""
    cached = _libpq_sqls.get(sql)
    if cached is None:
        first, *rest = sql.split("%s")
        query = (first + "".join(f"${i}{part}" for i, part in enumerate(rest, 1))).encode()
        name = b"stepping_django_" + hashlib.sha1(query).hexdigest()[:16].encode()
        cached = _libpq_sqls[sql] = (query, name)
    query, name = cached
    encoding = raw.info.encoding
    args = [None if p is None else p.encode(encoding) for p in params]
    pgconn = raw.pgconn
    if raw.prepare_threshold is None:
        _check(pgconn.exec_params(query, args), encoding)
        return
    done = _prepared.setdefault(raw, set())
    if name not in done:
        _check(pgconn.prepare(name, query), encoding)
        done.add(name)
    _check(pgconn.exec_prepared(name, args), encoding)


def _check(result: Any, encoding: str) -> None:
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, encoding=encoding)


# -- applying on commit -------------------------------------------------------------------

_local = threading.local()


#: The on_commit callback of each database alias.
_callbacks: dict[str, Callable[[], None]] = {}


def _schedule(labels: Iterable[str], using: str) -> None:
    """Apply `labels` when the transaction commits: the views of all its captures at once."""
    pending: dict[str, set[str]] | None = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = {}
    connection = connections[using]
    if not connection.run_on_commit:
        # No callback waits: a transaction that left labels here was rolled back.
        pending.pop(using, None)
    pending.setdefault(using, set()).update(labels)
    callback = _callbacks.get(using)
    if callback is None:
        callback = _callbacks[using] = functools.partial(_on_commit, using)
    connection.on_commit(callback)


def _on_commit(using: str) -> None:
    """Run after the writer commits; the first callback of a commit takes every label."""
    pending: dict[str, set[str]] = getattr(_local, "pending", None) or {}
    labels = pending.pop(using, set())
    if not labels:
        return
    try:
        if conf.eager():
            from stepping_django.apply import apply_view

            for label in sorted(labels):
                apply_view(label, using=using)
        elif conf.background_send():
            from stepping_django.publish import submit

            submit(labels, using)
        else:
            from stepping_django.tasks import enqueue

            enqueue(labels, using)
    except Exception:
        # The writer has committed and its keys are safe in the outbox: a failure to
        # apply or enqueue now must not fail the write. The next apply picks them up.
        logger.exception("stepping_django: could not apply or enqueue views %s", sorted(labels))


# -- signals --------------------------------------------------------------------------------


def _on_save(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    capture(sender, [instance.pk], using)


def _on_delete(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    capture(sender, [instance.pk], using)


#: on_delete handlers that delete or leave the referring rows; every other one (SET_NULL,
#: SET_DEFAULT, SET(...)) updates them with a queryset update that sends no signal.
_NOT_UPDATING = (models.CASCADE, models.PROTECT, models.RESTRICT, models.DO_NOTHING)

#: Per referenced model: the watched (model, foreign key) pairs its deletion updates.
_set_on_delete: dict[
    type[models.Model], set[tuple[type[models.Model], models.Field[Any, Any]]]
] = {}


def _on_referenced_delete(
    sender: type[models.Model], instance: models.Model, using: str, **kw: Any
) -> None:
    """Before `instance` is deleted, capture the watched rows its deletion will update
    (the triggers of their table, where installed, capture them without this query)."""
    for model, field in _set_on_delete.get(sender._meta.concrete_model, ()):
        plan = _plan(model, using)
        if not plan.inserted:
            _schedule(plan.labels, using)
            continue
        pks = model._base_manager.using(using).filter(**{field.name: instance})
        capture(model, list(pks.values_list("pk", flat=True)), using)


def connect_models(watched: Iterable[type[models.Model]]) -> None:
    """Connect the signals for `watched` models and every model stored in their tables
    (proxies and multi-table children, whose signals name their own class), and
    `pre_delete` of the models their foreign keys set to NULL or a default on deletion."""
    from django.apps import apps

    watched_set = {m._meta.concrete_model for m in watched}
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        family = {meta.concrete_model, *meta.get_parent_list()}
        if not family & watched_set:
            continue
        for field in meta.concrete_fields:
            remote = getattr(field, "remote_field", None)
            on_delete = getattr(remote, "on_delete", None)
            if remote is None or on_delete is None or on_delete in _NOT_UPDATING:
                continue
            target = remote.model._meta.concrete_model
            _set_on_delete.setdefault(target, set()).add((meta.concrete_model, field))
            for referenced in apps.get_models(include_auto_created=True):
                if referenced._meta.concrete_model is target:
                    pre_delete.connect(
                        _on_referenced_delete,
                        sender=referenced,
                        dispatch_uid=f"stepping_django:set_on_delete:{referenced._meta.label}",
                        weak=False,
                    )
        if model in _connected:
            continue
        uid = f"stepping_django:{meta.label}"
        post_save.connect(_on_save, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(_on_delete, sender=model, dispatch_uid=uid, weak=False)
        _connected.add(model)


def connect_signals() -> None:
    """Connect capture for every model a declared view reads (from AppConfig.ready)."""
    from stepping_django.registry import registry

    connect_models(registry.models())


# -- writes that send no signal -------------------------------------------------------------


class StepQuerySet(models.QuerySet):
    """A QuerySet whose `update`, `bulk_create` and `bulk_update` are captured."""

    def update(self, **kwargs: Any) -> int:
        plan = _plan(self.model, self.db)
        if not plan.labels:
            return super().update(**kwargs)
        if not plan.inserted:  # the triggers capture it: no need to read the keys first
            count = super().update(**kwargs)
            _schedule(plan.labels, self.db)
            return count
        with transaction.atomic(using=self.db, savepoint=False):
            pks = list(self.values_list("pk", flat=True))
            count = super().update(**kwargs)
            capture(self.model, pks, self.db)
        return count

    update.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> Any:
        if not _watched(self.model):
            return super().bulk_create(objs, *args, **kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            pks = [o.pk for o in created]
            # Without the new keys (ignore_conflicts, a backend that cannot return them),
            # capture the whole model: applying then diffs every row, which is correct.
            capture(self.model, None if any(pk is None for pk in pks) else pks, self.db)
        return created

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    # bulk_update needs nothing of its own: Django runs it as filter(pk__in=...).update(),
    # which is captured above.


class StepManager(models.Manager.from_queryset(StepQuerySet)):  # type: ignore[misc]
    """`objects = StepManager()`: a manager whose bulk writes are captured."""


def notify(
    model: type[models.Model], pks: Iterable[Any] | None = None, using: str | None = None
) -> None:
    """Tell the views that rows `pks` of `model` were written by raw SQL.

    Args:
        model: the model whose table was written.
        pks: the primary keys written (inserted, updated or deleted); None when unknown:
            the next apply then compares every row of the model.
        using: the database alias (default: the router's database for writing `model`).

    Call it inside the transaction that wrote the rows, so the capture commits with them.
    """
    db = using or router.db_for_write(model) or DEFAULT_DB_ALIAS
    # Always inserted: the rows may have been written where triggers do not fire (in a
    # session with session_replication_role = replica, say).
    capture(model, None if pks is None else list(pks), db, insert=True)
