"""Applying captured changes to a view: ordered, batched, idempotent, one applier per view.

One batch, in one transaction on the view's database:

1. claim the view's `ViewState` row (`select_for_update(skip_locked=True)` on Postgres;
   on SQLite, a write that takes its single write lock): another applier of the same
   view makes this one report "busy" instead of waiting;
2. build the view's tables if its version changed (or they were never built): backfill
   from the current rows of its input models;
3. read up to BATCH_SIZE pending outbox rows, the current rows of their keys and the
   view's snapshot of those keys, and make each input's change `-old +new`;
4. run one iteration at `Time(t, frontier=t-1)` with `t` = the view's previous time + 1,
   integrate the output change into the output cache, update the snapshot, delete exactly
   the outbox rows read, and record `t`.

Applying the same keys twice is a no-op (the snapshot already equals the current row),
keys may be applied in any order, and a rolled-back writer leaves no outbox rows. If the
iteration raises, the whole batch rolls back, the view is marked failed with the error and
traceback (its pending changes stay), and other views carry on.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from stepping_django import conf
from stepping_django import engine as st
from stepping_django.cache_models import create_output_table, write_output
from stepping_django.declare import IncrementalView
from stepping_django.engine.serialize import dumps, loads
from stepping_django.models import Outbox, Snapshot, ViewState
from stepping_django.registry import registry
from stepping_django.rows import all_rows, rows_for_pks
from stepping_django.signals import view_applied, view_failed
from stepping_django.store import django_store, drop_tables

_CHUNK = 500


class Busy(Exception):
    """Another applier holds the view."""


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


def _iterate(
    view: IncrementalView,
    store: Any,
    state: ViewState,
    inputs: list[st.ZSetPython[Any]],
    using: str,
) -> None:
    assert view.graph is not None
    t = state.time + 1
    st.MAX_SLEEP_SECS = conf.max_sleep_secs()
    (out,) = st.iteration(store, view.graph, inputs, st.Time(t, t - 1, False))
    write_output(view, out, using)
    state.time = t


def rebuild(view: IncrementalView, state: ViewState, using: str) -> int:
    """Recreate `view`'s tables empty and fill them from the current rows of its inputs, in
    batches of BATCH_SIZE rows (one iteration each). Runs in the caller's transaction with
    the view claimed. Returns the number of rows read."""
    assert view.graph is not None
    drop_tables(view, using)
    create_output_table(view, using)
    store = django_store(view, using, create_tables=True)
    Snapshot.objects.using(using).filter(view=view.label).delete()
    state.time = 0
    n = 0
    size = conf.batch_size()
    for model in dict.fromkeys(view.models):  # a model read twice feeds both positions
        label = model._meta.label
        positions = [i for i, m in enumerate(view.models) if m is model]
        items = list(all_rows(model, using).items())
        for i in range(0, len(items), size):
            chunk = items[i : i + size]
            change = st.ZSetPython({row: 1 for _, row in chunk})
            inputs = [
                change if j in positions else st.ZSetPython() for j in range(len(view.models))
            ]
            _iterate(view, store, state, inputs, using)
            Snapshot.objects.using(using).bulk_create(
                [
                    Snapshot(view=view.label, model=label, object_pk=pk, row=dumps(row))
                    for pk, row in chunk
                ],
                batch_size=_CHUNK,
            )
            n += len(chunk)
    state.graph_identifier = view.version
    state.built_at = timezone.now()
    return n


def _snapshots(
    view: IncrementalView, label: str, keys: list[str] | None, using: str
) -> dict[str, Any]:
    qs = Snapshot.objects.using(using).filter(view=view.label, model=label)
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


def _changes(
    view: IncrementalView, pending: list[tuple[int, str, str | None]], using: str
) -> list[st.ZSetPython[Any]]:
    """Each input's change for the pending keys (`-old +new` against the snapshot), and
    the snapshot brought up to date."""
    keys: dict[str, set[str] | None] = {}
    for _, label, pk in pending:
        if pk is None:
            keys[label] = None
        elif keys.get(label, set()) is not None:
            keys.setdefault(label, set()).add(pk)  # type: ignore[union-attr]
    per_model: dict[type[models.Model], st.ZSetPython[Any]] = {}
    snapshots = Snapshot.objects.using(using).filter(view=view.label)
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
        old = _snapshots(view, label, pk_list, using)
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
        for i in range(0, len(changed), _CHUNK):
            snapshots.filter(model=label, object_pk__in=changed[i : i + _CHUNK]).delete()
        snapshots.bulk_create(
            [
                Snapshot(view=view.label, model=label, object_pk=pk, row=dumps(current[pk]))
                for pk in changed
                if pk in current
            ],
            batch_size=_CHUNK,
        )
        per_model[model] = st.ZSetPython(change)
    return [per_model.get(m, st.ZSetPython()) for m in view.models]


def _apply_batch(view: IncrementalView, using: str, result: ApplyResult) -> int:
    """One transaction: claim, (re)build if needed, apply one batch. Returns keys applied."""
    with transaction.atomic(using=using):
        state = _claim(view, using)
        if state.graph_identifier != view.version:
            rebuild(view, state, using)
            result.rebuilt = True
        pending = list(
            Outbox.objects.using(using)
            .filter(view=view.label)
            .order_by("id")
            .values_list("id", "model", "object_pk")[: conf.batch_size()]
        )
        if pending:
            inputs = _changes(view, pending, using)
            if any(inputs):
                _iterate(view, django_store(view, using), state, inputs, using)
                result.iterations += 1
            ids = [i for i, _, _ in pending]
            for i in range(0, len(ids), _CHUNK):
                Outbox.objects.using(using).filter(id__in=ids[i : i + _CHUNK]).delete()
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


def apply_view(
    view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS, max_batches: int | None = None
) -> ApplyResult:
    """Apply `view`'s pending changes on database `using`, batch after batch, until none
    are left (or `max_batches`). Never raises for a failing query: the view is marked
    failed and the result says so; other views are not affected.

    Args:
        view: the view or its label (`"app_label.view_name"`).
        using: the database alias.
        max_batches: stop after this many batches (None: drain).

    Returns:
        An `ApplyResult` whose `status` is "fresh", "failed" or "busy".
    """
    view = _view(view)
    result = ApplyResult(view.label)
    if view.graph is None:
        result.status, result.error = ViewState.FAILED, "; ".join(p.message for p in view.problems)
        return result
    batches = 0
    while max_batches is None or batches < max_batches:
        try:
            applied = _apply_batch(view, using, result)
        except Busy:
            result.status = "busy"
            return result
        except Exception as e:  # the user's query, or the database: keep the input, report
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
