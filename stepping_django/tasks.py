"""Celery tasks: thin wrappers over `apply.apply_view`.

The writer's `transaction.on_commit` sends `apply_view_task(label, using)`. A task that
finds its view busy (another worker is applying it) sends itself again after
RETRY_BUSY_SECS, so a change committed while the other worker was finishing is never
left waiting for a write that may not come.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from stepping_django import conf
from stepping_django.apply import apply_view

#: Batches one task applies before handing the rest to a fresh task (fairness per worker).
MAX_BATCHES_PER_TASK = 50


@shared_task(name="stepping_django.apply_view", ignore_result=True)
def apply_view_task(label: str, using: str = "default") -> dict[str, Any]:
    """Apply the pending changes of view `label` on database `using`."""
    result = apply_view(label, using=using, max_batches=MAX_BATCHES_PER_TASK)
    if result.status == "busy":
        enqueue(label, using, countdown=conf.retry_busy_secs())
    elif result.status == "fresh" and result.batches >= MAX_BATCHES_PER_TASK:
        enqueue(label, using)
    return {"view": label, "status": result.status, "keys": result.keys, "error": result.error}


def enqueue(label: str, using: str, countdown: float | None = None) -> None:
    """Send the apply task for `label` to the configured queue."""
    options: dict[str, Any] = {}
    if conf.queue() is not None:
        options["queue"] = conf.queue()
    if countdown:
        options["countdown"] = countdown
    apply_view_task.apply_async(args=(label, using), **options)
