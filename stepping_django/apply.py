"""Applying captured changes to a view: ordered, batched, idempotent, one applier per view.

One batch, in one transaction on the view's database:

1. claim the view's `ViewState` row (`select_for_update(skip_locked=True)` on Postgres;
   on SQLite, a write that takes its single write lock): another applier of the same
   view makes this one report "busy" instead of waiting;
2. if the view's tables are of another version (its definition changed) or were never
   built, build them first (`build.build_view`: backfill from the source tables in pages,
   then switch reads over); while a build runs, the applied outbox rows are handed to it;
3. read up to BATCH_SIZE pending outbox rows, the current rows of their keys and the
   view's snapshot of those keys, and make each input's change `-old +new`;
4. run one iteration at `Time(t, frontier=t-1)` with `t` = the view's previous time + 1,
   integrate the output change into the output cache, update the snapshot, delete exactly
   the outbox rows read, and record `t`.

Applying the same keys twice is a no-op (the snapshot already equals the current row),
keys may be applied in any order, and a rolled-back writer leaves no outbox rows. If the
iteration raises, the whole batch rolls back, the view is marked failed with the error and
traceback (its pending changes stay), and other views carry on.

A view declared `parallel=True` is applied in pipelined batches instead, several workers
at once, each batch's iteration outside the view's lock (pipeline.py).
"""

from __future__ import annotations

import logging
import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from stepping_django import conf
from stepping_django import engine as st
from stepping_django.cache_models import write_output
from stepping_django.declare import IncrementalView
from stepping_django.engine.serialize import dumps, loads
from stepping_django.models import Outbox, Snapshot, ViewState
from stepping_django.registry import registry
from stepping_django.rows import all_rows, rows_for_pks
from stepping_django.signals import view_applied, view_failed
from stepping_django.store import django_store

_CHUNK = 500
logger = logging.getLogger("stepping_django")


class Busy(Exception):
    """Another applier holds the view."""


class RowTooLarge(ValueError):
    """An input row's encoding is larger than STEPPING["MAX_ROW_BYTES"]."""


def check_row_sizes(
    view: IncrementalView, label: str, encoded: list[tuple[str, bytes]]
) -> dict[str, bytes]:
    """`encoded` (pk, encoded row) as a dict, or raise RowTooLarge naming view, model and
    pk of the first row over STEPPING["MAX_ROW_BYTES"]."""
    limit = conf.max_row_bytes()
    for pk, data in encoded:
        if len(data) > limit:
            raise RowTooLarge(
                f"view {view.label}: row {label} pk={pk} is {len(data)} bytes encoded, "
                f"more than STEPPING['MAX_ROW_BYTES'] = {limit}"
            )
    return dict(encoded)


class NeedsBuild(Exception):
    """The view's tables are of another version (or none): build it first (build.py)."""


def snapshot_key(label: str, tag: str) -> str:
    """The `Snapshot.view` of a view's tables tagged `tag`."""
    return f"{label}#{tag}" if tag else label


@dataclass
class ApplyResult:
    """What `apply_view` did: keys applied, iterations run, and the view's status."""

    view: str
    status: str = ViewState.FRESH
    keys: int = 0
    iterations: int = 0
    batches: int = 0
    rebuilt: bool = False
    error: str = ""
    #: The failure was the database's (a lost connection, a terminated backend, a lock
    #: time-out), not the view's: applying again later may succeed (tasks.py retries).
    retry: bool = False


def database_fault(error: BaseException) -> bool:
    """A DB-API OperationalError or InterfaceError (Django's or the driver's own, e.g.
    psycopg's AdminShutdown): the connection or server failed, not the query."""
    return any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(error).__mro__)


def _view(view: IncrementalView | str) -> IncrementalView:
    return registry.get(view) if isinstance(view, str) else view


# -- claiming ------------------------------------------------------------------------------


def _claim(view: IncrementalView, using: str) -> ViewState:
    """Lock the view's state row for this transaction, or raise Busy."""
    states = ViewState.objects.using(using)
    if not states.filter(pk=view.label).exists():
        with transaction.atomic(using=using):  # a savepoint: a racing creator is harmless
            states.get_or_create(view=view.label)
    if connections[using].features.has_select_for_update_skip_locked:
        state = states.select_for_update(skip_locked=True).filter(pk=view.label).first()
        if state is None:
            raise Busy(view.label)
        return state
    # SQLite: the first write of a transaction takes the database's single write lock.
    states.filter(pk=view.label).update(time=models.F("time"))
    return states.get(pk=view.label)


# -- building and applying -----------------------------------------------------------------


def iterate(
    view: IncrementalView,
    store: Any,
    time: int,
    inputs: list[st.ZSetPython[Any]],
    using: str,
    output: type[models.Model] | None = None,
) -> int:
    """Run one iteration at `time + 1` and integrate the output change into the cache
    (`output`: a build's cache model). Returns the new time."""
    assert view.graph is not None
    t = time + 1
    st.MAX_SLEEP_SECS = conf.max_sleep_secs()
    (out,) = st.iteration(store, view.graph, inputs, st.Time(t, t - 1, False))
    write_output(view, out, using, output)
    return t


def _snapshots(key: str, label: str, keys: list[str] | None, using: str) -> dict[str, Any]:
    qs = Snapshot.objects.using(using).filter(view=key, model=label)
    if keys is None:
        return {pk: loads(bytes(row)) for pk, row in qs.values_list("object_pk", "row").iterator()}
    out = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        out.update(
            (pk, loads(bytes(row)))
            for pk, row in qs.filter(object_pk__in=chunk).values_list("object_pk", "row")
        )
    return out


def _write_snapshots(
    using: str, key: str, label: str, rows: dict[str, bytes], gone: list[str]
) -> None:
    """Set the snapshot `key` of model `label` to `rows` (pk -> encoded row) and drop the
    keys `gone`. On Postgres, one upsert and one delete with array parameters (the ORM's
    bulk_create spends most of a batch's claim building its statement)."""
    connection = connections[using]
    snapshots = Snapshot.objects.using(using).filter(view=key, model=label)
    if connection.vendor != "postgresql":
        changed = [*gone, *rows]
        for i in range(0, len(changed), _CHUNK):
            snapshots.filter(object_pk__in=changed[i : i + _CHUNK]).delete()
        snapshots.bulk_create(
            [Snapshot(view=key, model=label, object_pk=pk, row=data) for pk, data in rows.items()],
            batch_size=_CHUNK,
        )
        return
    qn = connection.ops.quote_name
    table = qn(Snapshot._meta.db_table)
    with connection.cursor() as cursor:
        if rows:
            cursor.execute(
                f"INSERT INTO {table} ({qn('view')}, {qn('model')}, {qn('object_pk')}, "
                f"{qn('row')}) SELECT %s, %s, k, r FROM unnest(%s::text[], %s::bytea[]) AS u(k, r) "
                f"ON CONFLICT ({qn('view')}, {qn('model')}, {qn('object_pk')}) "
                f"DO UPDATE SET {qn('row')} = excluded.{qn('row')}",
                [key, label, list(rows), list(rows.values())],
            )
        if gone:
            cursor.execute(
                f"DELETE FROM {table} WHERE {qn('view')} = %s AND {qn('model')} = %s "
                f"AND {qn('object_pk')} = ANY(%s::text[])",
                [key, label, gone],
            )


def changes(
    view: IncrementalView, pending: list[tuple[int, str, str | None]], using: str, key: str
) -> list[st.ZSetPython[Any]]:
    """Each input's change for the pending keys (`-old +new` against the snapshot `key`),
    and the snapshot brought up to date."""
    keys: dict[str, set[str] | None] = {}
    for _, label, pk in pending:
        if pk is None:
            keys[label] = None
        elif keys.get(label, set()) is not None:
            keys.setdefault(label, set()).add(pk)  # type: ignore[union-attr]
    per_model: dict[type[models.Model], st.ZSetPython[Any]] = {}
    for label, pks in keys.items():
        model = apps.get_model(label)
        if model not in view.models:
            continue  # captured for an older version of the view
        pk_list = None if pks is None else sorted(pks)
        if pk_list is None:
            current = all_rows(model, using)
        else:
            pk_field = model._meta.pk
            current = rows_for_pks(model, [pk_field.to_python(pk) for pk in pk_list], using)
        old = _snapshots(key, label, pk_list, using)
        change: dict[Any, int] = {}
        changed: list[str] = []
        for pk in pk_list if pk_list is not None else set(old) | set(current):
            o, n = old.get(pk), current.get(pk)
            if o == n:
                continue
            changed.append(pk)
            if o is not None:
                change[o] = change.get(o, 0) - 1
            if n is not None:
                change[n] = change.get(n, 0) + 1
        encoded = check_row_sizes(
            view, label, [(pk, dumps(current[pk])) for pk in changed if pk in current]
        )
        _write_snapshots(using, key, label, encoded, [pk for pk in changed if pk not in current])
        per_model[model] = st.ZSetPython(change)
    return [per_model.get(m, st.ZSetPython()) for m in view.models]


def _apply_batch(view: IncrementalView, using: str, result: ApplyResult) -> int:
    """One transaction: claim, apply one batch. Returns keys applied.

    Raises NeedsBuild when the view's tables are of another version (or missing). While a
    build of the view runs (build.py), the applied outbox rows are handed to it instead of
    deleted, so the build sees every change committed after it started reading."""
    with transaction.atomic(using=using):
        state = _claim(view, using)
        if state.graph_identifier != view.version:
            raise NeedsBuild(view.label)
        if view.parallel:  # applied in the caller's transaction (see _apply_parallel)
            from stepping_django.pipeline import check_idle

            check_idle(view, state, using)
        if state.building_version:
            from stepping_django.build import forget_dead_build

            forget_dead_build(view, state, using)
        pending = list(
            Outbox.objects.using(using)
            .filter(view=view.label, build="")
            .order_by("id")
            .values_list("id", "model", "object_pk")[: conf.batch_size()]
        )
        if pending:
            inputs = changes(view, pending, using, snapshot_key(view.label, state.tables))
            if any(inputs):
                store = django_store(view, using, tag=state.tables)
                state.time = iterate(view, store, state.time, inputs, using)
                result.iterations += 1
            ids = [i for i, _, _ in pending]
            for i in range(0, len(ids), _CHUNK):
                rows = Outbox.objects.using(using).filter(id__in=ids[i : i + _CHUNK])
                if state.building_version:
                    rows.update(build=state.building_tables or "first")
                else:
                    rows.delete()
        if pending or result.rebuilt or state.status != ViewState.FRESH:
            state.status = ViewState.FRESH
            state.error = state.traceback = ""
            state.applied_at = timezone.now()
            state.applied_keys += len(pending)
            state.save(using=using)
    if pending:
        view_applied.send(view, using=using, keys=len(pending), time=state.time)
    return len(pending)


def _mark_failed(view: IncrementalView, using: str, error: BaseException) -> str:
    message = f"{type(error).__name__}: {error}"
    with transaction.atomic(using=using):
        ViewState.objects.using(using).update_or_create(
            view=view.label,
            defaults={
                "status": ViewState.FAILED,
                "error": message,
                "traceback": "".join(tb.format_exception(error)),
                "failed_at": timezone.now(),
            },
        )
    view_failed.send(view, using=using, error=error)
    return message


def _build(view: IncrementalView, using: str, result: ApplyResult) -> bool:
    """Build (or rebuild) the view's declared version; whether applying may go on."""
    if result.rebuilt:  # another build switched the tables meanwhile: let it be
        result.status = "building"
        return False
    from stepping_django.build import BuildAbandoned, build_view

    try:
        built = build_view(view, using)
    except BuildAbandoned:  # another build replaced this one; it applies after
        result.status = "building"
        return False
    except Exception as e:
        result.retry = database_fault(e)
        result.status, result.error = ViewState.FAILED, _mark_failed(view, using, e)
        return False
    if built.status == "building":  # another process builds it, then applies
        result.status = "building"
        return False
    result.rebuilt = True
    result.status, result.error = ViewState.FRESH, ""
    return True


def _fan_out(view: IncrementalView, using: str) -> None:
    """A full batch of a parallel view leaves more keys: from a Celery task, send one more
    apply task (deduped like the writers' with TASK_DEDUPE_CACHE), so that an idle worker
    takes the next batch while this one goes on, also when a single task (a sweep) found
    a backlog."""
    from celery import current_task

    from stepping_django.tasks import enqueue

    if not current_task:  # not in a worker (e.g. `stepping apply`): no broker to assume
        return
    try:
        enqueue([view.label], using)
    except Exception:  # no broker: this applier goes on alone
        logger.warning("stepping_django: could not send a task for view %s", view.label)


def _apply_parallel(view: IncrementalView, using: str, result: ApplyResult) -> int:
    """One pipelined batch of a parallel view (pipeline.py). Returns keys applied.

    Inside the caller's transaction (`transaction.atomic()`, a TestCase) a connection of
    its own would not see what that transaction wrote: there the view is applied as any
    other, one batch at a time on Django's connection, once no pipelined batch is in
    flight."""
    from stepping_django.pipeline import NeedsPostgres, apply_batch

    connection = connections[using]
    if connection.in_atomic_block:
        if connection.vendor != "postgresql":
            raise NeedsPostgres.of(view, using)
        return _apply_batch(view, using, result)

    keys, iterations = apply_batch(view, using)
    result.iterations += iterations
    if keys >= conf.batch_size():
        _fan_out(view, using)
    if keys:
        state = ViewState.objects.using(using).filter(pk=view.label).first()
        view_applied.send(view, using=using, keys=keys, time=state.time if state else 0)
    return keys


def apply_view(
    view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS, max_batches: int | None = None
) -> ApplyResult:
    """Apply `view`'s pending changes on database `using`, batch after batch, until none
    are left (or `max_batches`). Never raises for a failing query: the view is marked
    failed and the result says so; other views are not affected.

    A parallel view (`parallel=True`) is applied batch by batch with pipelined times, so
    that several workers may apply it at once (pipeline.py); a batch that fails part-way
    makes this call (or the next) rebuild the view.

    Args:
        view: the view or its label (`"app_label.view_name"`).
        using: the database alias.
        max_batches: stop after this many batches (None: drain).

    Returns:
        An `ApplyResult` whose `status` is "fresh", "failed", "busy" or "building".
    """
    from stepping_django.pipeline import BatchFailed, NeedsRecovery

    view = _view(view)
    result = ApplyResult(view.label)
    if view.graph is None:
        result.status, result.error = ViewState.FAILED, "; ".join(p.message for p in view.problems)
        return result
    batches = 0
    while max_batches is None or batches < max_batches:
        try:
            if view.parallel:
                applied = _apply_parallel(view, using, result)
            else:
                applied = _apply_batch(view, using, result)
        except Busy:
            result.status = "busy"
            return result
        except (NeedsBuild, NeedsRecovery) as e:
            if isinstance(e, NeedsRecovery) and result.rebuilt:  # failed again: retry later
                result.status, result.error, result.retry = ViewState.FAILED, repr(e), True
                return result
            if not _build(view, using, result):
                return result
            continue
        except BatchFailed as e:  # marked failed; the next claim rebuilds the tables
            result.status, result.error = ViewState.FAILED, _mark_failed(view, using, e)
            if result.rebuilt:  # at most one rebuild per call: the next apply tries again
                result.retry = True
                return result
            continue
        except Exception as e:  # the user's query, or the database: keep the input, report
            result.retry = database_fault(e)
            result.status, result.error = ViewState.FAILED, _mark_failed(view, using, e)
            return result
        batches += 1
        result.batches = batches
        result.keys += applied
        if applied == 0:
            break
    return result


def apply_pending(using: str = DEFAULT_DB_ALIAS) -> dict[str, ApplyResult]:
    """Apply every view's pending changes now (tests, scripts, `manage.py stepping apply`).

    Returns:
        One `ApplyResult` per view label.
    """
    return {v.label: apply_view(v, using) for v in registry.views()}


def ensure_views(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> dict[str, ApplyResult]:
    """Build every view whose tables are missing or of an older version (post_migrate)."""
    if ViewState._meta.db_table not in connections[using].introspection.table_names():
        return {}
    return apply_pending(using)
