"""Faults a production deployment meets, with the real services: Postgres, Redis, and
Celery worker processes. After each, every view equals a from-scratch computation and the
outbox is empty: nothing lost, nothing applied twice.

- C: the worker's Postgres backend is terminated (`pg_terminate_backend`) while it is
  blocked inside an apply (the test holds a lock on one of the view's state tables, so the
  worker is stopped mid-iteration, deterministically); the batch rolls back and the task
  sends itself again on a fresh connection.
- D: a worker process is SIGKILLed at random points while thousands of ORM writes are
  applied, and restarted; at least 20 kills.
- E: the broker loses every task (Redis FLUSHALL), or is restarted without persistence
  while writers commit (CI only: it restarts the shared server); the changes wait in the
  outbox and the periodic `stepping_django.sweep` applies them.

The counts of faults injected and changes lost are printed (`-s`) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.test import override_settings

import stepping_django
from stepping_django import publish
from stepping_django.models import Outbox, ViewState
from tests.conftest import IN_CI
from tests.django.faults import (
    USING,
    Worker,
    blocked_backend,
    new_queue,
    random_write,
    require_broker,
    send_sweep,
    views_fresh,
    wait_fresh,
)
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.long,
    pytest.mark.django_db(transaction=True, databases=["default", USING]),
]


def _seed(n_products: int = 20, n_baskets: int = 10) -> None:
    products = [
        Product.objects.using(USING).create(name=f"p{i}", price=i) for i in range(n_products)
    ]
    baskets = [Basket.objects.using(USING).create(customer=f"c{i}") for i in range(n_baskets)]
    for i, b in enumerate(baskets):
        for p in products[i : i + 3]:
            LineItem.objects.using(USING).create(basket=b, product=p, qty=i + 1)


def _writing(queue: str) -> Any:
    return override_settings(STEPPING={"EAGER": False, "QUEUE": queue})


def _report(**counts: int) -> None:
    print("\nFAULTS " + " ".join(f"{k}={v}" for k, v in counts.items()))


# -- C: the worker's connection terminated mid-iteration -----------------------------------


def test_a_worker_connection_terminated_mid_apply_rolls_back_and_retries(tmp_path: Path) -> None:
    require_broker()
    _seed()
    stepping_django.apply_pending(USING)  # views built before the faults
    queue = new_queue()
    worker = Worker(queue, tmp_path / "worker.log")
    worker.start()
    dsn = connections[USING].get_connection_params()
    admin = psycopg.connect(
        host=dsn["host"], port=dsn["port"], dbname=dsn["dbname"], user=dsn["user"],
        autocommit=True,
    )  # fmt: skip
    locker = psycopg.connect(
        host=dsn["host"], port=dsn["port"], dbname=dsn["dbname"], user=dsn["user"]
    )
    terminated = 0
    try:
        for view in (incremental.basket_totals, incremental.product_quantities,
                     incremental.top_quantities):  # fmt: skip
            assert view.graph is not None
            table = view.graph.states[0].name
            # Hold the table: the worker's iteration blocks reading it, inside its apply.
            locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            time_before = ViewState.objects.using(USING).get(view=view.label).time
            with _writing(queue):
                LineItem.objects.using(USING).update(qty=terminated + 11)
            deadline = time.monotonic() + 60
            while (pid := blocked_backend(admin, table)) is None:
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)
            assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
            terminated += 1
            locker.commit()  # release the table
            wait_fresh(USING, [worker])
            state = ViewState.objects.using(USING).get(view=view.label)
            assert state.status == ViewState.FRESH and state.time > time_before
        # No write followed the faults: each view caught up through the task's own retry
        # (the terminated task and its retry, at least two per fault).
        log = worker.log()
        assert log.count("stepping_django.apply_views[") >= 2 * 2 * terminated, log
    finally:
        locker.close()
        admin.close()
        worker.stop()
    assert views_fresh(USING)
    _report(connections_terminated=terminated, changes_lost=0)


# -- D: SIGKILL of the worker at random points ---------------------------------------------

KILLS = 20
WRITES = 2000


def test_sigkilled_workers_lose_nothing(tmp_path: Path) -> None:
    require_broker()
    _seed()
    stepping_django.apply_pending(USING)
    queue = new_queue()
    worker = Worker(queue, tmp_path / "worker.log")
    worker.start()
    rng = random.Random(7)
    kills = mid_task = 0
    writes = 0
    done = threading.Event()

    def killer() -> None:
        nonlocal kills, mid_task
        krng = random.Random(11)
        while not done.is_set():
            worker.wait_ready()
            time.sleep(krng.uniform(0.01, 0.6))  # a random point in the worker's work
            mid_task += worker.busy()
            worker.kill()
            kills += 1
            worker.start()

    thread = threading.Thread(target=killer, daemon=True)
    try:
        thread.start()
        with _writing(queue):
            while writes < WRITES or kills < KILLS:
                writes += random_write(rng)
        done.set()
        thread.join()
        assert worker.alive()
        # Tasks held by killed workers are not redelivered before Redis's visibility
        # timeout (an hour): the sweep, as Celery beat would send it, picks the keys up.
        wait_fresh(USING, [worker], poke=lambda: send_sweep(queue))
    finally:
        done.set()
        thread.join(timeout=30)
        worker.stop()
    assert not Outbox.objects.using(USING).exists()
    for view in (incremental.basket_totals, incremental.product_quantities,
                 incremental.top_quantities, incremental.checked_prices):  # fmt: skip
        assert view.maintained(USING) == view.from_scratch(USING), view.label
    assert kills >= KILLS and writes >= WRITES
    _report(workers_killed=kills, killed_mid_task=mid_task, orm_rows_written=writes, changes_lost=0)


# -- E: the broker loses every task --------------------------------------------------------


def test_tasks_flushed_from_the_broker_lose_no_change(tmp_path: Path) -> None:
    import redis
    from django.conf import settings

    require_broker()
    _seed()
    stepping_django.apply_pending(USING)
    queue = new_queue()
    with _writing(queue):  # no worker yet: the tasks wait in Redis
        for i in range(30):
            LineItem.objects.using(USING).filter(qty=i % 5 + 1).update(qty=i % 7 + 1)
            Product.objects.using(USING).create(name=f"late{i}", price=i)
        assert publish.flush()  # every task sent before the broker loses them
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert client.llen(queue) > 0
    if IN_CI:
        client.flushall()  # every task is gone
    else:  # other runs may share this Redis on a workstation: lose only this test's tasks
        client.delete(queue)
    assert client.llen(queue) == 0
    pending = Outbox.objects.using(USING).count()
    assert pending > 0
    worker = Worker(queue, tmp_path / "worker.log")
    worker.start()
    try:
        send_sweep(queue)  # what the beat entry in the README sends every minute
        wait_fresh(USING, [worker], poke=lambda: send_sweep(queue))
    finally:
        worker.stop()
    assert not Outbox.objects.using(USING).exists()
    _report(broker_flushes=1, pending_keys_recovered=pending, changes_lost=0)


REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def test_a_broker_restart_loses_no_change(tmp_path: Path) -> None:
    """Redis is shut down (without saving) while writers commit and a worker runs, then
    started again: writes made meanwhile commit (the task cannot be sent; the keys wait in
    the outbox), the worker reconnects, and the sweep applies everything."""
    import shutil
    import subprocess

    import redis
    from django.conf import settings

    if not IN_CI:
        pytest.skip("restarts the Redis server other runs may share; runs in CI (CI=true)")
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed", pytrace=False)
    require_broker()
    _seed()
    stepping_django.apply_pending(USING)
    queue = new_queue()
    worker = Worker(queue, tmp_path / "worker.log")
    worker.start()
    worker.wait_ready()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closed the connection as it went
    written = 0
    try:
        with _writing(queue):
            for i in range(3):  # each commit tries to send its task and cannot
                LineItem.objects.using(USING).filter(qty=i + 1).update(qty=i + 20)
                Product.objects.using(USING).create(name=f"outage{i}", price=i)
                written += 2
        assert Outbox.objects.using(USING).exists()
    finally:
        subprocess.run(REDIS_START, check=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not come back"
                time.sleep(0.1)
    try:
        wait_fresh(USING, [worker], poke=lambda: send_sweep(queue))
    finally:
        worker.stop()
    _report(broker_restarts=1, writes_during_outage=written, changes_lost=0)
