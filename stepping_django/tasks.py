"""Celery tasks: thin wrappers over `apply.apply_view`.

When a writer commits, `enqueue(labels, using)` sends one `apply_views_task` for the views
its transaction changed (from the writer's background publisher, `publish.py`, unless
BACKGROUND_SEND is off). The task applies each of them; a view that another worker is
applying ("busy") is sent again after RETRY_BUSY_SECS, so a change committed while that
worker was finishing is never left waiting for a write that may not come.

With TASK_DEDUPE_CACHE, a flag per database in that shared cache says "a task is waiting":
a writer sends a task only when it sets the flag, and the task clears the flag when it
starts, before reading the outbox, then applies every view with pending keys (the retry
of a busy view is sent without the flag, so it never holds writers' tasks back). So every
committed change is followed by a task that has not yet read the outbox, and a busy system
sends one message per task run instead of one per commit. A flag left by a lost message
expires after DEDUPE_TIMEOUT_SECS; changes committed before then wait for the next write
or `manage.py stepping apply`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from celery import shared_task
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import DatabaseError, connections

from stepping_django import conf
from stepping_django.apply import apply_view
from stepping_django.models import Outbox

#: Rounds (one batch per view) one task runs before handing the rest to a fresh task.
MAX_ROUNDS_PER_TASK = 50
#: A "task waiting" flag older than this is ignored (its message was lost).
DEDUPE_TIMEOUT_SECS = 60
#: A task whose database connection failed (server restarted, backend terminated, network)
#: sends itself again after this many seconds, on a fresh connection, doubling the delay
#: at each attempt up to MAX_RETRY_DATABASE_SECS, for at most DATABASE_RETRIES attempts
#: (an error that persists, e.g. SQLite's "no such column" after a bad migration, is not
#: retried forever: the view stays failed until the next write or sweep).
RETRY_DATABASE_SECS = 1.0
MAX_RETRY_DATABASE_SECS = 60.0
DATABASE_RETRIES = 8


def _flag(using: str, queue: str | None) -> str:
    """The "a task is waiting" flag of a database's views on a queue."""
    return f"stepping_django:queued:{queue or ''}:{using}"


_flag_clients: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _add_flag(alias: str, using: str, queue: str | None) -> bool:
    """Set the "a task is waiting" flag of `using` on `queue` unless it is set; True if
    this call set it. On Django's Redis cache, one SET NX through a client kept per cache
    object (its `add` builds a new redis client at every call, which costs more than the
    SET)."""
    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        return bool(cache.add(_flag(using, queue), 1, timeout=DEDUPE_TIMEOUT_SECS))
    key = cache.make_and_validate_key(_flag(using, queue))
    clients = _flag_clients.setdefault(cache._cache, {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = cache._cache.get_client(key, write=True)
    return bool(client.set(key, 1, nx=True, ex=DEDUPE_TIMEOUT_SECS))


# acks_late: a task lost with its worker is delivered again (applying is idempotent), and with
# worker_prefetch_multiplier=1 a busy worker holds no waiting task back from an idle one.
@shared_task(name="stepping_django.apply_views", ignore_result=True, acks_late=True)
def apply_views_task(labels: list[str] | None, using: str = "default", attempt: int = 0) -> None:
    """Apply the pending changes of views `labels` (None: every view with pending keys)
    on database `using`. `attempt`: how many times a database fault sent it again."""
    alias = conf.task_dedupe_cache()
    if alias is not None:
        caches[alias].delete(_flag(using, conf.queue()))
    if labels is None or alias is not None:
        pending = Outbox.objects.using(using).values_list("view", flat=True).distinct()
        labels = sorted({*(labels or ()), *pending})
    # Round robin, one batch per view per round: a view that keeps receiving changes does
    # not hold the others back.
    busy: list[str] = []
    lost: list[str] = []
    remaining = list(labels)
    try:
        for _ in range(MAX_ROUNDS_PER_TASK):
            if not remaining:
                break
            more = []
            for label in remaining:
                result = apply_view(label, using=using, max_batches=1)
                if result.status == "busy":
                    busy.append(label)
                elif result.status == "fresh" and result.keys:
                    more.append(label)
                elif result.status == "failed" and result.retry:
                    lost.append(label)
            remaining = more
    except DatabaseError:
        # The connection died mid-apply (the batch rolled back with it; marking the view
        # failed failed too): start again on a fresh connection. Nothing was applied twice.
        connections[using].close()
        _retry(labels, using, attempt)
        raise
    if lost:
        connections[using].close()
        _retry(lost, using, attempt)
    if busy:  # not through the flag: writers meanwhile must still send their own task
        enqueue(busy, using, countdown=conf.retry_busy_secs(), dedupe=False)
    if remaining:
        enqueue(remaining, using)


@shared_task(name="stepping_django.sweep", ignore_result=True, acks_late=True)
def sweep(using: str = "default") -> None:
    """Apply every view with pending changes on database `using`.

    Run it periodically (Celery beat, see README): a task lost with the broker (a Redis
    FLUSHALL or restart without persistence, a worker killed holding an unacknowledged
    message) loses no change, since the keys stay in the outbox until applied, but without
    a sweep they wait for the next write to the same views."""
    apply_views_task(None, using)


def _retry(labels: list[str], using: str, attempt: int) -> None:
    if attempt < DATABASE_RETRIES:
        countdown = min(RETRY_DATABASE_SECS * 2**attempt, MAX_RETRY_DATABASE_SECS)
        enqueue(labels, using, countdown=countdown, dedupe=False, attempt=attempt + 1)


def enqueue(
    labels: Iterable[str],
    using: str,
    countdown: float | None = None,
    dedupe: bool = True,
    attempt: int = 0,
) -> None:
    """Send one apply task for `labels` to the configured queue (unless one is waiting)."""
    dedupe_cache = conf.task_dedupe_cache() if dedupe else None
    send(labels, using, conf.queue(), dedupe_cache, countdown=countdown, attempt=attempt)


def send(
    labels: Iterable[str],
    using: str,
    queue: str | None,
    dedupe_cache: str | None,
    countdown: float | None = None,
    attempt: int = 0,
) -> bool:
    """Send one apply task for `labels` to `queue` (unless one is waiting, by the flag in
    cache `dedupe_cache`): `enqueue` with the settings given, as the publisher read them
    at the commit. Returns False when a waiting task made the send unnecessary."""
    if dedupe_cache is not None and not _add_flag(dedupe_cache, using, queue):
        return False
    options: dict[str, Any] = {}
    if queue is not None:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    try:
        args: tuple[Any, ...] = (sorted(labels), using) + ((attempt,) if attempt else ())
        apply_views_task.apply_async(args=args, **options)
    except Exception:
        if dedupe_cache is not None:
            caches[dedupe_cache].delete(_flag(using, queue))
        raise
    return True
