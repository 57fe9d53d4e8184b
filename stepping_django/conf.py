"""Settings: one `STEPPING` dict, read through one accessor per key.

    STEPPING = {
        "EAGER": False,          # apply on commit in the writing process, no Celery
        "BATCH_SIZE": 1000,      # most captured keys applied in one iteration
        "MAX_SLEEP_SECS": 5.0,   # how long an iteration waits for a table's frontier
        "QUEUE": None,           # Celery queue of the apply tasks (None: Celery's default)
        "RETRY_BUSY_SECS": 0.25,  # a task that finds its view busy runs again after this
        "TASK_DEDUPE_CACHE": None,  # a shared cache alias: one waiting task at a time
        "BACKGROUND_SEND": True,  # send apply tasks from a thread, not in the commit
        "SEND_INTERVAL_SECS": 0.01,  # that thread sends at most once per this
        "MAX_ROW_BYTES": 1048576,  # largest encoded input row a view accepts
        "DATABASE_TRIGGERS": True,  # on Postgres, capture with triggers (migrate installs)
    }

Every key is optional; the accessors below give the defaults. Settings are read at each
call, so `override_settings(STEPPING=...)` in tests takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "EAGER": False,
    "BATCH_SIZE": 1000,
    "MAX_SLEEP_SECS": 5.0,
    "QUEUE": None,
    "RETRY_BUSY_SECS": 0.25,
    "TASK_DEDUPE_CACHE": None,
    "BACKGROUND_SEND": True,
    "SEND_INTERVAL_SECS": 0.01,
    "MAX_ROW_BYTES": 1 << 20,
    "DATABASE_TRIGGERS": True,
}


def _get(key: str) -> Any:
    return getattr(settings, "STEPPING", {}).get(key, DEFAULTS[key])


def eager() -> bool:
    """Apply captured changes in the writing process as soon as its transaction commits.

    Default False: a Celery task is sent on commit. True suits SQLite, scripts, the demo
    and tests: no broker, no worker.
    """
    return bool(_get("EAGER"))


def batch_size() -> int:
    """The most captured keys (model, pk) one iteration applies. Default 1000."""
    return int(_get("BATCH_SIZE"))


def max_sleep_secs() -> float:
    """How long an iteration waits for a table to reach its frontier. Default 5.0."""
    return float(_get("MAX_SLEEP_SECS"))


def queue() -> str | None:
    """The Celery queue apply tasks are sent to. Default None: Celery's default queue."""
    value = _get("QUEUE")
    return None if value is None else str(value)


def retry_busy_secs() -> float:
    """When a task finds its view being applied by another worker, it is sent again after
    this many seconds, so a change committed meanwhile is never left waiting. Default 0.25."""
    return float(_get("RETRY_BUSY_SECS"))


def task_dedupe_cache() -> str | None:
    """The alias of a Django cache shared by writers and workers (Redis, Memcached, the
    database cache; not the per-process local-memory cache). When set, a writer sends an
    apply task only if none is already waiting for its database, so a busy table costs one
    broker message per task run instead of one per commit. Default None: every commit
    sends one task (for the views it changed)."""
    value = _get("TASK_DEDUPE_CACHE")
    return None if value is None else str(value)


def background_send() -> bool:
    """Send the apply task of a commit from a background thread of the writing process
    (`publish.py`) instead of in the commit's `on_commit` callback, so the writer does not
    wait for the broker and cache round trips. A task lost because the process died before
    sending it is replaced by the sweep (README). Turn it off where threads do not run
    (uWSGI without --enable-threads). Default True."""
    return bool(_get("BACKGROUND_SEND"))


def send_interval_secs() -> float:
    """The background thread sends at most once per this many seconds, one task for every
    view committed meanwhile: a busy writer sends far fewer messages, and a change waits
    at most this much longer for its task. Default 0.01."""
    return float(_get("SEND_INTERVAL_SECS"))


def max_row_bytes() -> int:
    """The largest input row (encoded, in bytes) a view applies. A larger row makes the
    apply fail with `apply.RowTooLarge` naming the view, model and primary key: the view is
    marked failed, its pending changes are kept (shorten the row, or raise the limit, then
    apply again). Every input row is stored in the view's snapshot and in the state tables
    of the operators it passes through, so a big row costs several times its size.
    Default 1 MiB."""
    return int(_get("MAX_ROW_BYTES"))


def database_triggers() -> bool:
    """On Postgres, capture writes with statement triggers that `migrate` installs on the
    tables views read (`triggers.py`): no round trip of its own per write, and raw SQL,
    `QuerySet.update` and TRUNCATE are captured too. Off: signals and `StepManager`
    insert the keys, as on SQLite, and the next `migrate` drops the triggers. Default True."""
    return bool(_get("DATABASE_TRIGGERS"))


def validate() -> list[str]:
    """Problems with the STEPPING setting itself, as messages (for the system checks)."""
    value = getattr(settings, "STEPPING", {})
    if not isinstance(value, dict):
        return [f"STEPPING must be a dict, not {type(value).__name__}"]
    problems = [f"STEPPING has an unknown key {k!r}" for k in value if k not in DEFAULTS]
    if "BATCH_SIZE" in value and (
        not isinstance(value["BATCH_SIZE"], int) or value["BATCH_SIZE"] < 1
    ):
        problems.append(
            f"STEPPING['BATCH_SIZE'] must be a positive int, not {value['BATCH_SIZE']!r}"
        )
    if "MAX_ROW_BYTES" in value and (
        not isinstance(value["MAX_ROW_BYTES"], int) or value["MAX_ROW_BYTES"] < 1
    ):
        problems.append(
            f"STEPPING['MAX_ROW_BYTES'] must be a positive int, not {value['MAX_ROW_BYTES']!r}"
        )
    if "SEND_INTERVAL_SECS" in value and (
        not isinstance(value["SEND_INTERVAL_SECS"], int | float)
        or isinstance(value["SEND_INTERVAL_SECS"], bool)
        or not 0 <= value["SEND_INTERVAL_SECS"] <= 60
    ):
        problems.append(
            "STEPPING['SEND_INTERVAL_SECS'] must be a number of seconds from 0 to 60, "
            f"not {value['SEND_INTERVAL_SECS']!r}"
        )
    return problems
