"""Building a view into fresh tables from its source tables, while writers go on, then
switching reads over to them.

Used for a view's first build, for a new version (its definition changed: other table
names) and for `manage.py stepping rebuild`. A build has a *tag*, which names its tables:
state tables `sdv_<view>_<tag>_st_...` and output cache `sdo_<view>_<tag>`.

1. start (one short transaction, the view's state row locked): record the build in
   `ViewState.building_*`, create its empty tables;
2. backfill: read each input model by keyset pagination on its primary key, one page
   (BATCH_SIZE rows) per transaction, one iteration each, into the build's tables and its
   own snapshot (`Snapshot.view = "label#tag"`). The live tables are untouched, and the
   live applier goes on; it hands every outbox row it applies from now on to the build
   (`Outbox.build = tag`) instead of deleting it;
3. catch up: apply the handed-over keys to the build's tables (diff against its snapshot);
4. switch (one transaction, the view claimed): apply the last handed-over keys, rename the
   live output cache away (`sdo_<view>_<old tag>`) and the build's into its place, record
   the tag and version as the view's. Keys still pending for the view are then applied to
   the new tables by the next apply, against the new snapshot.

A key changed while the backfill ran is applied after it, by diff against what the
backfill read: a change the backfill saw gives an empty diff, so nothing is lost or
doubled. The old tables stay until `prune` (maintenance.py) drops them.

A parallel view (pipeline.py) is also rebuilt this way when one of its batches failed
part-way: no batch is claimed meanwhile, so its pending keys wait for the switch.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from stepping_django import conf
from stepping_django import engine as st
from stepping_django.apply import changes, check_row_sizes, iterate, snapshot_key
from stepping_django.cache_models import create_output_table, output_model
from stepping_django.declare import IncrementalView
from stepping_django.engine.naming import digest
from stepping_django.engine.serialize import dumps
from stepping_django.models import Outbox, Snapshot, ViewState
from stepping_django.pipeline_models import PipelineBatch
from stepping_django.rows import attnames, row_class
from stepping_django.store import django_store, drop_tables, tagged_name

#: A build that made no progress for this long is taken to be dead: another may replace it.
STALE_BUILD_SECS = 300

#: `progress(rows_done, rows_total)`, called after each page of the backfill.
Progress = Callable[[int, int], None]


class BuildAbandoned(RuntimeError):
    """Another build of the view replaced this one."""


@dataclass
class BuildResult:
    """What `build_view` did: "built", or "building" when another build is running."""

    view: str
    status: str
    tag: str = ""
    rows: int = 0
    caught_up: int = 0
    time: int = 0


def output_table(view: IncrementalView, tag: str) -> str:
    """The output cache table of the build tagged `tag` (once switched: of an old version)."""
    return f"sdo_{digest(view.label, 8)}_{tag or 'first'}"


def _lock(view: IncrementalView, using: str) -> ViewState:
    """The view's state row, locked until the end of the transaction (waits for appliers)."""
    states = ViewState.objects.using(using)
    if not states.filter(pk=view.label).exists():
        with transaction.atomic(using=using):
            states.get_or_create(view=view.label)
    if connections[using].features.has_select_for_update:
        return states.select_for_update().get(pk=view.label)
    states.filter(pk=view.label).update(time=models.F("time"))  # SQLite: the write lock
    return states.get(pk=view.label)


_models: dict[tuple[str, str], type[models.Model]] = {}


def _build_model(view: IncrementalView, tag: str) -> type[models.Model]:
    """The unmanaged model over the build's output table."""
    model = _models.get((view.label, tag))
    if model is None or getattr(model, "view", None) is not view:
        model = _models[view.label, tag] = output_model(view, db_table=output_table(view, tag))
    return model


def tag_tables(view: IncrementalView, tag: str, using: str) -> list[str]:
    """The tables that exist for the build tagged `tag` of `view` (states and output)."""
    prefix = view.table_prefix + (tag + "_" if tag else "st_")
    names = connections[using].introspection.table_names()
    return [n for n in names if n.startswith(prefix) or n == output_table(view, tag)]


def _discard(view: IncrementalView, tag: str, using: str) -> None:
    """Drop a build's tables, its snapshot and the keys handed to it."""
    key = snapshot_key(view.label, tag)
    drop_tables(using, tag_tables(view, tag, using))
    Snapshot.objects.using(using).filter(view=key).delete()
    Outbox.objects.using(using).filter(view=view.label, build=tag or "first").delete()


def _start(view: IncrementalView, using: str, force: bool) -> str | None:
    """Record a new build and create its tables; None when a live build is running."""
    assert view.graph is not None
    with transaction.atomic(using=using):
        state = _lock(view, using)
        now = timezone.now()
        if state.building_tables or state.building_version:
            beat = state.build_heartbeat_at or state.build_started_at or now
            if not force and now - beat < datetime.timedelta(seconds=STALE_BUILD_SECS):
                return None
            _discard(view, state.building_tables, using)
        first = not state.graph_identifier and not state.tables
        tag = "" if first else "g" + secrets.token_hex(3)
        _discard(view, tag, using)  # leftovers of a first build that died
        django_store(view, using, create_tables=True, tag=tag)
        create_output_table(view, using, _build_model(view, tag))
        state.building_version = view.version
        state.building_tables = tag
        state.build_started_at = state.build_heartbeat_at = now
        state.save(using=using)
    return tag


def forget_dead_build(view: IncrementalView, state: ViewState, using: str) -> bool:
    """If the view's build made no progress for STALE_BUILD_SECS (its process died), stop
    handing keys to it: clear it from `state` (locked by the caller) and drop the keys
    handed to it (the live tables applied them). Its tables and snapshot are left to
    `prune`. Returns
    whether it was dead."""
    now = timezone.now()
    beat = state.build_heartbeat_at or state.build_started_at or now
    if now - beat < datetime.timedelta(seconds=STALE_BUILD_SECS):
        return False
    Outbox.objects.using(using).filter(view=view.label).exclude(build="").delete()
    state.building_version = state.building_tables = ""
    state.build_started_at = state.build_heartbeat_at = None
    state.save(using=using)
    return True


#: How often a build records that it is alive (each a short UPDATE of the state row).
BEAT_SECS = 5.0


class _Beat:
    """A build's check that it is still the view's build, and its heartbeat.

    The check reads the state row without locking it, before each page's transaction;
    the heartbeat is its own short autocommitted UPDATE at most every BEAT_SECS, so the
    live applier (which skips a locked state row as "busy") is almost never held back.
    """

    def __init__(self, view: IncrementalView, tag: str, using: str) -> None:
        self.view, self.tag, self.using = view, tag, using
        self.last = 0.0

    def _ours(self) -> Any:
        return ViewState.objects.using(self.using).filter(
            pk=self.view.label, building_tables=self.tag, building_version=self.view.version
        )

    def check(self) -> None:
        """Raise BuildAbandoned if another build replaced this one."""
        if not self._ours().exists():
            raise BuildAbandoned(
                f"view {self.view.label}: build {self.tag or 'first'} was replaced"
            )

    def beat(self) -> None:
        now = monotonic()
        if now - self.last >= BEAT_SECS:
            self.last = now
            self._ours().update(build_heartbeat_at=timezone.now())


def _insert_snapshots(using: str, rows: list[tuple[str, str, str, bytes]]) -> None:
    """Plain multi-row INSERTs (the ORM's bulk_create costs more than the rows here)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(c) for c in ("view", "model", "object_pk", "row"))
    sql = f"INSERT INTO {qn(Snapshot._meta.db_table)} ({columns}) VALUES "
    with connection.cursor() as cursor:
        for i in range(0, len(rows), 200):
            chunk = rows[i : i + 200]
            cursor.execute(
                sql + ", ".join(["(%s, %s, %s, %s)"] * len(chunk)),
                [v for row in chunk for v in row],
            )


def _backfill(view: IncrementalView, tag: str, using: str, progress: Progress | None) -> int:
    """Feed every source row into the build's tables, a page per transaction."""
    models_ = list(dict.fromkeys(view.models))  # a model read twice feeds both positions
    total = sum(m._base_manager.db_manager(using).count() for m in models_)
    key, out_model, size = snapshot_key(view.label, tag), _build_model(view, tag), conf.batch_size()
    done = time = 0
    alive = _Beat(view, tag, using)
    if progress:
        progress(0, total)
    for model in models_:
        label, cls, names = model._meta.label, row_class(model), attnames(model)
        pk_at = names.index(model._meta.pk.attname)
        positions = [i for i, m in enumerate(view.models) if m is model]
        qs = model._base_manager.db_manager(using).order_by("pk").values_list(*names)
        last: Any = None
        while True:
            page = list((qs if last is None else qs.filter(pk__gt=last))[:size])
            if not page:
                break
            last = page[-1][pk_at]
            rows = [(str(v[pk_at]), cls(**dict(zip(names, v)))) for v in page]
            encoded = check_row_sizes(view, label, [(pk, dumps(r)) for pk, r in rows])
            change = st.ZSetPython({row: 1 for _, row in rows})
            inputs = [
                change if j in positions else st.ZSetPython() for j in range(len(view.models))
            ]
            alive.check()
            with transaction.atomic(using=using):
                store = django_store(view, using, tag=tag)
                time = iterate(view, store, time, inputs, using, out_model)
                _insert_snapshots(using, [(key, label, pk, encoded[pk]) for pk, _ in rows])
            alive.beat()
            done += len(rows)
            if progress:
                progress(done, max(total, done))
    return time


def _catch_up_batch(view: IncrementalView, tag: str, time: int, using: str) -> tuple[int, int]:
    """Apply one batch of the keys handed to the build. Returns (keys, new time)."""
    key = snapshot_key(view.label, tag)
    outbox = Outbox.objects.using(using)
    pending = list(
        outbox.filter(view=view.label, build=tag or "first")
        .order_by("id")
        .values_list("id", "model", "object_pk")[: conf.batch_size()]
    )
    if pending:
        inputs = changes(view, pending, using, key)
        if any(inputs):
            store = django_store(view, using, tag=tag)
            time = iterate(view, store, time, inputs, using, _build_model(view, tag))
        ids = [i for i, _, _ in pending]
        for i in range(0, len(ids), 500):
            outbox.filter(id__in=ids[i : i + 500]).delete()
    return len(pending), time


def _switch(view: IncrementalView, tag: str, time: int, using: str) -> int:
    """Make the build's tables the view's, in one transaction. Returns keys caught up."""
    caught_up = 0
    with transaction.atomic(using=using):
        state = _lock(view, using)
        if state.building_tables != tag or state.building_version != view.version:
            raise BuildAbandoned(f"view {view.label}: build {tag or 'first'} was replaced")
        while True:
            n, time = _catch_up_batch(view, tag, time, using)
            caught_up += n
            if not n:
                break
        connection = connections[using]
        qn = connection.ops.quote_name
        live = view.model._meta.db_table
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
            if live in tables and not state.graph_identifier:  # left by a flush: no view's
                cursor.execute(f"DROP TABLE {qn(live)}")
            elif live in tables:  # the old version's, kept until `prune`
                old = output_table(view, state.tables)
                cursor.execute(f"DROP TABLE IF EXISTS {qn(old)}")
                cursor.execute(f"ALTER TABLE {qn(live)} RENAME TO {qn(old)}")
            cursor.execute(f"ALTER TABLE {qn(output_table(view, tag))} RENAME TO {qn(live)}")
        # Batches of a parallel view still running on the old tables finish into nothing.
        PipelineBatch.objects.using(using).filter(view=view.label).exclude(tables=tag).delete()
        state.tables = tag
        state.graph_identifier = view.version
        state.time = time
        state.building_version = state.building_tables = ""
        state.build_started_at = state.build_heartbeat_at = None
        state.status = ViewState.FRESH
        state.error = state.traceback = ""
        state.built_at = timezone.now()
        state.save(using=using)
    return caught_up


def _abandon(view: IncrementalView, tag: str, using: str) -> None:
    """Undo a failed build: its tables, snapshot and handed-over keys (which the live
    tables have applied already) go; the live view is as it was."""
    with transaction.atomic(using=using):
        state = _lock(view, using)
        if state.building_tables == tag and state.building_version == view.version:
            _discard(view, tag, using)
            state.building_version = state.building_tables = ""
            state.build_started_at = state.build_heartbeat_at = None
            state.save(using=using)


def build_view(
    view: IncrementalView,
    using: str = DEFAULT_DB_ALIAS,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> BuildResult:
    """Build `view`'s declared version from its source tables into fresh tables, in pages
    of BATCH_SIZE rows, then switch reads and applying over to them.

    Args:
        view: the view.
        using: the database alias.
        force: replace a build of the view that is still running (default: leave it be and
            return status "building").
        progress: called as `progress(rows_done, rows_total)` during the backfill.

    Returns:
        A `BuildResult`; status "built", or "building" if another build is running.

    Raises:
        whatever the view's query raises; the build's tables are then dropped and the live
        tables are as they were.
    """
    if view.graph is None:
        raise RuntimeError(
            f"view {view.label} is not usable: " + "; ".join(p.message for p in view.problems)
        )
    tag = _start(view, using, force)
    if tag is None:
        return BuildResult(view.label, "building")
    rows = 0
    try:
        time = _backfill(view, tag, using, progress)
        rows = Snapshot.objects.using(using).filter(view=snapshot_key(view.label, tag)).count()
        caught_up = 0
        alive = _Beat(view, tag, using)
        while True:  # most handed-over keys outside the switch's transaction
            alive.check()
            with transaction.atomic(using=using):
                n, time = _catch_up_batch(view, tag, time, using)
            alive.beat()
            caught_up += n
            if not n:
                break
        caught_up += _switch(view, tag, time, using)
    except BuildAbandoned:
        raise
    except BaseException:
        _abandon(view, tag, using)
        raise
    return BuildResult(view.label, "built", tag, rows, caught_up, time)


def old_tables(view: IncrementalView, using: str) -> list[str]:
    """Tables of `view`'s older versions and abandoned builds: neither the live tables nor
    a build in progress."""
    state = ViewState.objects.using(using).filter(pk=view.label).first()
    keep = set()
    if state is not None and view.graph is not None:
        if state.graph_identifier == view.version:
            keep |= {tagged_name(view, s.name, state.tables) for s in view.graph.states}
        else:  # the live tables are of an older version: keep them until the switch
            keep |= set(tag_tables(view, state.tables, using))
        if state.building_tables or state.building_version:
            keep |= set(tag_tables(view, state.building_tables, using))
    names = connections[using].introspection.table_names()
    ours = view.table_prefix, f"sdo_{digest(view.label, 8)}_"
    return sorted(n for n in names if n.startswith(ours) and n not in keep)


def old_snapshot_keys(view: IncrementalView, using: str) -> list[str]:
    """`Snapshot.view` keys of `view` that neither its live tables nor a build use."""
    state = ViewState.objects.using(using).filter(pk=view.label).first()
    keep = set()
    if state is not None:
        keep.add(snapshot_key(view.label, state.tables))
        if state.building_tables or state.building_version:
            keep.add(snapshot_key(view.label, state.building_tables))
    keys = (
        Snapshot.objects.using(using)
        .filter(models.Q(view=view.label) | models.Q(view__startswith=view.label + "#"))
        .values_list("view", flat=True)
        .distinct()
    )
    return sorted(k for k in keys if k not in keep)
