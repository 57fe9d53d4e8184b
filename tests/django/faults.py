"""Helpers of the fault and concurrency tests: real Celery worker processes on a queue of
their own, over the test run's Postgres database and the real Redis broker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections

import tests.celeryapp  # noqa: F401  (the Celery app the test process sends tasks with)
from stepping_django.models import Outbox, ViewState
from stepping_django.registry import registry
from tests.conftest import service_missing
from tests.testapp.models import Basket, LineItem, Product

USING = "postgres"
ROOT = Path(__file__).resolve().parents[2]
BROKER_HOW = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
)
#: How long the workers get to catch up before a test gives up: a deadline, not a speed
#: assertion (a test passes as soon as the views are fresh).
DEADLINE_SECS = 120


def require_broker() -> str:
    from django.conf import settings
    from kombu import Connection

    url = str(settings.CELERY_BROKER_URL)
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as e:
        service_missing("The Celery broker (Redis)", BROKER_HOW, e)
    return url


def new_queue() -> str:
    return f"stepping-faults-{uuid.uuid4().hex[:8]}"


class Worker:
    """One `celery worker -P solo` process on `queue`, restartable, killable with SIGKILL."""

    def __init__(self, queue: str, log: Path, using: str = "postgres", dedupe: str = "") -> None:
        self.queue = queue
        self.log_path = log
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "STEPPING_TEST_PG_NAME": connections[using].settings_dict["NAME"],
            "STEPPING_TEST_QUEUE": queue,
            "STEPPING_TEST_DEDUPE": dedupe,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def current_log(self) -> Path:
        """The log of the current process (one file per start)."""
        return self.log_path.with_suffix(f".{self.starts}.log")

    def start(self) -> None:
        self.starts += 1
        log = open(self.current_log(), "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celeryapp", "worker", "-P", "solo",
             "-Q", self.queue, "-l", "info", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"{uuid.uuid4().hex[:8]}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.current_log().read_text(errors="replace"):
            assert self.alive() and time.monotonic() < deadline, self.log()
            time.sleep(0.02)

    def busy(self) -> bool:
        """Whether the current process has received a task it has not finished."""
        text = self.current_log().read_text(errors="replace")
        return text.count("apply_views[") + text.count("sweep[") > 2 * (
            text.count("] succeeded in") + text.count("] raised")
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no acknowledgement, the database connection just drops."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The tail of the logs of every start."""
        parts = [
            self.log_path.with_suffix(f".{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
        ]
        return "\n".join(parts)[-6000:]


def blocked_backend(admin: psycopg.Connection[Any], table: str) -> int | None:
    """The backend waiting for a lock on `table`, if any."""
    row = admin.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = %s AND NOT l.granted",
        [table],
    ).fetchone()
    return None if row is None else int(row[0])


def views_fresh(using: str) -> bool:
    if Outbox.objects.using(using).exists():
        return False
    return all(v.maintained(using) == v.from_scratch(using) for v in registry.views())


def wait_fresh(using: str, workers: list[Worker], poke: object = None) -> float:
    """Wait until every view equals from scratch with an empty outbox; `poke()` is called
    every 2 s meanwhile (e.g. sending a sweep, as Celery beat would). Returns the wait."""
    started = time.monotonic()
    last_poke = 0.0
    while not views_fresh(using):
        now = time.monotonic()
        if now - started > DEADLINE_SECS or not any(w.alive() for w in workers):
            logs = "\n---\n".join(w.log() for w in workers)
            pending = sorted(set(Outbox.objects.using(using).values_list("view", flat=True)))
            states = list(ViewState.objects.using(using).values_list("view", "status", "error"))
            pytest.fail(
                f"views not fresh (pending: {pending}; states: {states}); worker logs:\n{logs}"
            )
        if poke is not None and now - last_poke > 2:
            poke()  # type: ignore[operator]
            last_poke = now
        time.sleep(0.2)
    return time.monotonic() - started


def send_sweep(queue: str, using: str = "postgres") -> None:
    from stepping_django.tasks import sweep

    sweep.apply_async(args=(using,), queue=queue)


def random_write(rng: random.Random) -> int:
    """One random ORM write on shared rows (create, update, bulk update, delete); returns
    the number of rows it wrote."""
    kind = rng.random()
    items = LineItem.objects.using(USING)
    if kind < 0.3:
        b = Basket.objects.using(USING).order_by("?").first()
        p = Product.objects.using(USING).order_by("?").first()
        if b is None or p is None:
            Product.objects.using(USING).create(name="n", price=rng.randint(1, 9))
            return 1
        items.create(basket=b, product=p, qty=rng.randint(1, 5))
        return 1
    if kind < 0.55:
        return items.filter(
            pk__in=list(items.order_by("?").values_list("pk", flat=True)[:3])
        ).update(qty=rng.randint(1, 9))
    if kind < 0.75:
        return (
            Product.objects.using(USING)
            .filter(
                pk__in=list(
                    Product.objects.using(USING).order_by("?").values_list("pk", flat=True)[:2]
                )
            )
            .update(price=rng.randint(1, 20))
        )
    if kind < 0.9:
        li = items.order_by("?").first()
        if li is not None:
            li.delete()
            return 1
        return 0
    if kind < 0.97:
        Product.objects.using(USING).create(name=f"p{rng.randint(0, 999)}", price=rng.randint(1, 9))
        return 1
    b = Basket.objects.using(USING).order_by("?").first()
    if b is not None:
        b.delete()  # cascades to its line items
    Basket.objects.using(USING).create(customer="new")
    return 1
