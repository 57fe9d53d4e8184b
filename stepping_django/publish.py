"""Sending the apply tasks of committed writes from a background thread, off the writer's
path (STEPPING["BACKGROUND_SEND"], on by default).

A writer's commit hands the labels of the views it changed to this process's publisher
and returns at once; the publisher's thread then sends the task (`tasks.send`: the
TASK_DEDUPE_CACHE flag, then the broker). It sends after the commit, so the task still
finds every change of the commits handed over before it. Commits arriving while it sends
or waits are sent together: at most one send per SEND_INTERVAL_SECS, which bounds the
broker and cache round trips of a busy process and adds at most that much to the lag.
While a task is already waiting (TASK_DEDUPE_CACHE's flag was held at the last sends),
the thread checks less often, the interval doubling up to WAITING_INTERVAL_SECS: that
task applies every change committed before it starts, so a check meanwhile can only
find it still waiting, at the price of a cache round trip (about 0.1 ms of the writer's
CPU). A change committed after it started waits at most that much longer.

A process that exits normally sends what is pending (`flush`, at exit). One that dies
between its commit and the send (SIGKILL, a crash, a server that runs no threads, such
as uWSGI without --enable-threads) loses the task but not the change: its keys stay in
the outbox, and the sweep (README: `stepping_django.sweep` on a beat schedule) or the
next write's task applies them. A forked child starts with an empty publisher; its
parent sends what the parent committed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from celery import current_app

from stepping_django import conf

logger = logging.getLogger("stepping_django")

#: The longest interval between two sends while a task is already waiting.
WAITING_INTERVAL_SECS = 0.05


class Publisher:
    """One thread per process, started by the first `submit`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: Views to apply by (database, queue, TASK_DEDUPE_CACHE) as of their commits.
        self._pending: dict[tuple[str, str | None, str | None], set[str]] = {}
        self._app: Any = None
        self._sending = False
        self._idle = False  # the thread waits for a submit (which then wakes it)
        self._thread: threading.Thread | None = None

    def submit(self, labels: set[str], using: str) -> None:
        """Send a task for `labels` on database `using` soon (call after the commit)."""
        # Celery's current app is per thread: the publisher's thread sends with the
        # writer's app (a new thread would otherwise get Celery's fallback app).
        app = current_app._get_current_object()
        # The settings of the commit, not of the send (override_settings may end between).
        key = (using, conf.queue(), conf.task_dedupe_cache())
        with self._lock:
            self._pending.setdefault(key, set()).update(labels)
            self._app = app
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="stepping_django-publisher", daemon=True
                )
                self._thread.start()
            if self._idle:
                self._changed.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is sent; False if `timeout` ran out."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._sending:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._changed.notify_all()
                self._changed.wait(left)
        return True

    def _run(self) -> None:
        last = float("-inf")
        waiting = 0  # how many sends in a row found a task waiting
        while True:
            with self._lock:
                while not self._pending:
                    self._idle = True
                    self._changed.wait()
                self._idle = False
                self._sending = True
            try:
                wait = last + _interval(waiting) - time.monotonic()
                if wait > 0 and not _exiting:
                    time.sleep(wait)  # commits meanwhile join this send
                with self._lock:
                    batch, self._pending = self._pending, {}
                    app = self._app
                last = time.monotonic()
                waiting = min(waiting + 1, 16) if not self._send(batch, app) else 0
            except Exception:  # the thread must outlive any one send
                logger.exception("stepping_django: the publisher failed to send")
            finally:
                with self._lock:
                    self._sending = False
                    self._changed.notify_all()

    @staticmethod
    def _send(batch: dict[tuple[str, str | None, str | None], set[str]], app: Any) -> bool:
        """Send the batch's tasks; False when each was already waiting (nothing sent)."""
        from stepping_django import tasks

        if app is not None:
            app.set_current()
        sent = False
        for (using, queue, dedupe_cache), labels in batch.items():
            try:
                sent = tasks.send(labels, using, queue, dedupe_cache) is not False or sent
            except Exception:
                sent = True  # not known to be waiting: keep the usual interval
                # The keys are safe in the outbox: the sweep or the next write applies them.
                logger.exception(
                    "stepping_django: could not send the apply task of views %s", sorted(labels)
                )
        return sent


def _interval(waiting: int) -> float:
    """The least time between two sends after `waiting` sends in a row found a task
    already waiting: SEND_INTERVAL_SECS, doubled at each such send up to
    WAITING_INTERVAL_SECS."""
    interval = conf.send_interval_secs()
    if not waiting:
        return interval
    return min(interval * 2**waiting, max(interval, WAITING_INTERVAL_SECS))


publisher = Publisher()
_exiting = False


def submit(labels: set[str], using: str) -> None:
    """Hand views `labels` of database `using` to this process's publisher."""
    publisher.submit(labels, using)


def flush(timeout: float = 5.0) -> bool:
    """Send what is pending now; False if it was not all sent within `timeout` seconds."""
    return publisher.flush(timeout)


def _at_exit() -> None:
    global _exiting
    _exiting = True
    publisher.flush()


def _after_fork() -> None:
    global publisher
    publisher = Publisher()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork)
