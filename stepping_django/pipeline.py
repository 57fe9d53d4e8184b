"""Parallel application of one view: several workers apply successive batches at once,
pipelined with the seed page's times.

A view declared `@incremental_view(parallel=True)` (PostgreSQL only) is applied in three
steps per batch instead of one transaction (apply.py):

1. claim (one short transaction, the view's `ViewState` row locked): read up to
   BATCH_SIZE pending outbox keys, diff them against the view's snapshot (updating it),
   give the batch the next time t, record it in flight (`PipelineBatch`) and delete the
   outbox rows (or hand them to a running build). Before the claim commits, the worker
   takes a Postgres advisory lock for the batch on a connection of its own, held until
   the batch ends: a batch whose lock is free has lost its worker.
2. iterate, outside the lock: one iteration at `Time(t, frontier=t-1, flush_every_set=True)`
   on a store over that connection, which commits each vertex's tables as soon as the
   vertex is done. Batch t+1, claimed meanwhile by another worker, reads each table once
   batch t has committed it.
3. finish, once the output cache has reached t-1 (one transaction): integrate the output
   change into the cache, record t as the cache's time (a `last_update` row named after
   the tables' output table, `build.output_table`) and delete the in-flight record; then
   release the advisory lock. So readers always see the cache at one batch's time.

A batch that fails after its claim is not atomic: some tables hold its change, others do
not (StoreSQL, flush_every_set=True), and retrying it would apply it twice to the former.
Its worker records the error on the batch; a batch whose worker died is found by the next
claim (its lock is free); later batches waiting for either time out (MAX_SLEEP_SECS) and
fail too. Once a batch of the view's tables has failed, no further batch is claimed: the
view is rebuilt from its source tables into fresh tables (build.py) while writers go on,
and its pending keys, kept in the outbox meanwhile, are applied to the new tables by diff
against the rebuild's snapshot. Batches still running on the old tables finish into
nothing (the finish checks the view's tables). Nothing is lost or applied twice; the cost
of a failure is a rebuild.

apply.py decides the rest: inside the caller's transaction a parallel view is applied the
one-transaction way (`check_idle` first), and in a Celery worker each full batch sends one
more apply task, so idle workers join in.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from stepping_django import conf
from stepping_django import engine as st
from stepping_django.apply import Busy, NeedsBuild, changes, snapshot_key
from stepping_django.build import forget_dead_build, output_table
from stepping_django.cache_models import write_output
from stepping_django.declare import IncrementalView
from stepping_django.engine.stores.wait import wait_for_frontier
from stepping_django.models import Outbox, ViewState
from stepping_django.pipeline_models import PipelineBatch
from stepping_django.store import pipeline_store

#: How long a claim waits for the view's state row (another claim, a build's switch)
#: before reporting the view busy.
CLAIM_LOCK_TIMEOUT = "2s"
_CHUNK = 500


class NeedsRecovery(Exception):
    """A batch of the view's tables failed or lost its worker: rebuild before claiming."""


class BatchFailed(Exception):
    """A batch failed after its claim, part-way: the view's tables need a rebuild."""


class NeedsPostgres(RuntimeError):
    """Parallel application runs on PostgreSQL only."""

    @classmethod
    def of(cls, view: IncrementalView, using: str) -> NeedsPostgres:
        return cls(
            f"view {view.label} is declared parallel=True, which needs PostgreSQL; database "
            f"{using!r} is {connections[using].vendor}"
        )


def lock_key(label: str, tables: str, time: int) -> int:
    """The advisory lock (a signed 64-bit key) a worker holds while it runs a batch."""
    digest = hashlib.blake2b(f"{label}\0{tables}\0{time}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- each worker thread's own connection and stores ----------------------------------------


class _Local(threading.local):
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.conns: dict[str, psycopg.Connection[Any]] = {}
        self.stores: dict[tuple[str, str, str, str], Any] = {}


_local = _Local()


def _connection(using: str) -> psycopg.Connection[Any]:
    """This thread's pipeline connection to database `using` (not Django's: the store
    commits it table by table), opened again after a fault or a fork."""
    if _local.pid != os.getpid():  # forked: the parent's sockets are not ours to use
        _local.pid, _local.conns, _local.stores = os.getpid(), {}, {}
    conn = _local.conns.get(using)
    if conn is None or conn.closed or conn.broken:
        params = dict(connections[using].get_connection_params())
        for django_only in ("cursor_factory", "context"):
            params.pop(django_only, None)
        conn = _local.conns[using] = psycopg.connect(**params, autocommit=False)
        _local.stores = {k: v for k, v in _local.stores.items() if k[0] != using}
    return conn


def _store(view: IncrementalView, using: str, conn: psycopg.Connection[Any], tag: str) -> Any:
    key = (using, view.label, view.version, tag)
    store = _local.stores.get(key)
    if store is None or store.conn is not conn:
        store = _local.stores[key] = pipeline_store(view, conn, tag)
    return store


def close_connections() -> None:
    """Close this thread's pipeline connections (tests, shutdown)."""
    for conn in _local.conns.values():
        conn.close()
    _local.conns, _local.stores = {}, {}


# -- claim ---------------------------------------------------------------------------------


@dataclass
class Claim:
    """A claimed batch: its in-flight record, time, tables and input changes."""

    batch: int
    time: int
    tables: str
    keys: int
    inputs: list[st.ZSetPython[Any]]
    lock: int
    conn: psycopg.Connection[Any]


def _lock_state(view: IncrementalView, using: str) -> ViewState:
    """The view's state row, locked against other claims and builds (not against the
    finishes, which only share it) until the transaction ends; Busy after a wait."""
    states = ViewState.objects.using(using)
    if not states.filter(pk=view.label).exists():
        with transaction.atomic(using=using):  # a savepoint: a racing creator is harmless
            states.get_or_create(view=view.label)
    with connections[using].cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
    try:
        return states.select_for_update(no_key=True).get(pk=view.label)
    except DatabaseError as e:
        if getattr(e.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy(view.label) from e
        raise


def _broken(view: IncrementalView, state: ViewState, using: str) -> bool:
    """Whether a batch on the view's current tables failed or lost its worker (recorded
    now as failed)."""
    batches = PipelineBatch.objects.using(using).filter(view=view.label, tables=state.tables)
    rows = list(batches.values_list("id", "time", "error"))
    if any(error for _, _, error in rows):
        return True
    dead = False
    with connections[using].cursor() as cursor:
        for pk, t, _ in rows:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", [lock_key(view.label, state.tables, t)]
            )
            (free,) = cursor.fetchone()
            # A free lock and a record still there (a worker deletes the record before it
            # releases the lock): the worker died.
            if free and batches.filter(pk=pk).update(
                error=f"the worker of the batch at time {t} died (its lock is free)"
            ):
                dead = True
    return dead


def check_idle(view: IncrementalView, state: ViewState, using: str) -> None:
    """Before a parallel view is applied the one-transaction way (apply.py): raise
    NeedsRecovery if a batch failed or lost its worker, Busy if one is in flight. (Its
    tables and cache are then at `state.time`; the next claim sets the cache's time.)"""
    if _broken(view, state, using):
        raise NeedsRecovery(view.label)
    if PipelineBatch.objects.using(using).filter(view=view.label, tables=state.tables).exists():
        raise Busy(view.label)


def _set_cache_time(using: str, marker: str, t: int) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO last_update (table_name, t) VALUES (%s, %s) "
            "ON CONFLICT (table_name) DO UPDATE SET t = excluded.t",
            [marker, t],
        )


def _take(view: IncrementalView, state: ViewState, using: str) -> tuple[int, Claim | None]:
    """Inside the claim: take the next batch of keys. Returns (keys, claim); no claim when
    the keys changed nothing."""
    outbox = Outbox.objects.using(using)
    pending = list(
        outbox.filter(view=view.label, build="")
        .order_by("id")
        .values_list("id", "model", "object_pk")[: conf.batch_size()]
    )
    if not pending:
        return 0, None
    inputs = changes(view, pending, using, snapshot_key(view.label, state.tables))
    ids = [i for i, _, _ in pending]
    for i in range(0, len(ids), _CHUNK):
        rows = outbox.filter(id__in=ids[i : i + _CHUNK])
        if state.building_version:  # a build is running: it applies these keys too
            rows.update(build=state.building_tables or "first")
        else:
            rows.delete()
    claim = None
    if any(inputs):
        t = state.time + 1
        batches = PipelineBatch.objects.using(using).filter(view=view.label, tables=state.tables)
        if not batches.exists():  # nothing in flight: the cache is at the view's time
            _set_cache_time(using, output_table(view, state.tables), t - 1)
        batch = batches.create(view=view.label, tables=state.tables, time=t, keys=len(pending))
        key = lock_key(view.label, state.tables, t)
        claim = Claim(batch.pk, t, state.tables, len(pending), inputs, key, _connection(using))
        state.time = t
    state.status = ViewState.FRESH
    state.error = state.traceback = ""
    state.applied_at = timezone.now()
    state.applied_keys += len(pending)
    state.save(using=using)
    if claim is not None:  # last: from here on, only the commit can fail (see _claim)
        claim.conn.execute("SELECT pg_advisory_lock(%s)", [claim.lock])
        claim.conn.commit()
    return len(pending), claim


def _claim(view: IncrementalView, using: str) -> tuple[int, Claim | None]:
    taken: tuple[int, Claim | None] = (0, None)
    recover = False
    try:
        with transaction.atomic(using=using):
            state = _lock_state(view, using)
            if state.graph_identifier != view.version:
                raise NeedsBuild(view.label)
            if state.building_version:
                forget_dead_build(view, state, using)
            recover = _broken(view, state, using)  # committed: a dead batch stays failed
            if not recover:
                taken = _take(view, state, using)
    except BaseException:
        if taken[1] is not None:
            _unlock(taken[1])
        raise
    if recover:
        raise NeedsRecovery(view.label)
    return taken


# -- iterate and finish --------------------------------------------------------------------


def _finish(view: IncrementalView, claim: Claim, out: st.ZSetPython[Any], using: str) -> bool:
    """Integrate the batch's output into the cache after batch t-1 did; False when the
    view was rebuilt meanwhile (the output was of its old tables)."""
    marker = output_table(view, claim.tables)
    connection = connections[using]

    def times() -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name, t FROM last_update WHERE table_name = %s", [marker])
            return dict(cursor.fetchall())

    wait_for_frontier(times, [marker], claim.time - 1)
    batch = PipelineBatch.objects.using(using).filter(pk=claim.batch)
    qn = connection.ops.quote_name
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            # Shared with claims and other finishes; a build's switch waits for it.
            cursor.execute(
                f"SELECT {qn('tables')} FROM {qn(ViewState._meta.db_table)} "
                f"WHERE {qn('view')} = %s FOR KEY SHARE",
                [view.label],
            )
            row = cursor.fetchone()
            if row is None or row[0] != claim.tables:
                batch.delete()
                return False
            write_output(view, out, using)
            cursor.execute(
                "UPDATE last_update SET t = GREATEST(t, %s) WHERE table_name = %s",
                [claim.time, marker],
            )
        batch.delete()
    return True


def _unlock(claim: Claim) -> None:
    conn = claim.conn
    if conn.closed or conn.broken:
        return  # the lock went with its session
    try:
        conn.rollback()  # whatever a failure left open
        conn.execute("SELECT pg_advisory_unlock(%s)", [claim.lock])
        conn.commit()
    except psycopg.Error:
        conn.close()


def _record_failure(claim: Claim, error: BaseException, using: str) -> None:
    message = f"{type(error).__name__}: {error}"[:10_000] or "failed"
    try:
        PipelineBatch.objects.using(using).filter(pk=claim.batch).update(error=message)
    except DatabaseError:
        pass  # the batch's lock goes with this worker's session: the next claim sees it


def apply_batch(view: IncrementalView, using: str) -> tuple[int, int]:
    """Claim, iterate and finish one batch of a parallel view.

    Returns:
        (keys applied, iterations run).

    Raises:
        Busy, NeedsBuild, NeedsRecovery (a batch failed: rebuild the view first),
        BatchFailed (this batch failed after its claim; the view needs a rebuild).
    """
    if connections[using].vendor != "postgresql":
        raise NeedsPostgres.of(view, using)
    assert view.graph is not None
    keys, claim = _claim(view, using)
    if claim is None:
        return keys, 0
    try:
        st.MAX_SLEEP_SECS = conf.max_sleep_secs()
        store = _store(view, using, claim.conn, claim.tables)
        time = st.Time(claim.time, claim.time - 1, True)
        (out,) = st.iteration(store, view.graph, claim.inputs, time)
        finished = _finish(view, claim, out, using)
    except Exception as e:
        _record_failure(claim, e, using)
        raise BatchFailed(
            f"view {view.label}: the batch at time {claim.time} failed part-way "
            f"({type(e).__name__}: {e}); the view is rebuilt before the next batch"
        ) from e
    finally:
        _unlock(claim)
    return keys, int(finished)
