"""Concurrency with the real services: writer processes and several Celery workers on one
Postgres database and one Redis broker.

- 8 writer processes do random creates, updates and deletes on shared rows for
  STEPPING_CONCURRENCY_SECS seconds (default 60) while 2 workers apply; at the end every
  view equals a from-scratch computation and the outbox is empty. Two workers never apply
  one view at once (its ViewState row lock): were they to, a change would be applied twice
  and the views would not verify.
- A worker SIGKILLed while it holds a view's lock blocks that view only as long as its
  Postgres backend lives (README, "Faults"): here the backend is held waiting on a table
  lock, so the view stays claimed (checked: the row is locked) until that wait ends; then
  the backend notices its client is gone, the lock goes, and another worker applies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.test import override_settings

import stepping_django
from stepping_django.models import Outbox, ViewState
from tests.django.faults import (
    ROOT,
    USING,
    Worker,
    new_queue,
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

WRITERS = 8
WORKERS = 2
DURATION_SECS = float(os.environ.get("STEPPING_CONCURRENCY_SECS", "60"))


def _seed() -> None:
    products = [Product.objects.using(USING).create(name=f"p{i}", price=i) for i in range(20)]
    for i in range(10):
        b = Basket.objects.using(USING).create(customer=f"c{i}")
        for p in products[i : i + 3]:
            LineItem.objects.using(USING).create(basket=b, product=p, qty=i + 1)
    stepping_django.apply_pending(USING)


def _psycopg(autocommit: bool = False) -> psycopg.Connection[Any]:
    p = connections[USING].get_connection_params()
    return psycopg.connect(
        host=p["host"], port=p["port"], dbname=p["dbname"], user=p["user"], autocommit=autocommit
    )


def test_eight_writers_and_two_workers_keep_every_view_equal_to_from_scratch(
    tmp_path: Path,
) -> None:
    require_broker()
    _seed()
    queue = new_queue()
    workers = [Worker(queue, tmp_path / f"worker{i}.log") for i in range(WORKERS)]
    for w in workers:
        w.start()
    env = {**workers[0].env}
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.django.writer_proc", str(seed), str(DURATION_SECS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for seed in range(WRITERS)
    ]
    try:
        outputs = [p.communicate(timeout=DURATION_SECS + 120)[0] for p in writers]
        assert all(p.returncode == 0 for p in writers), outputs
        wait_fresh(USING, workers, poke=lambda: send_sweep(queue))
    finally:
        for p in writers:
            if p.poll() is None:
                p.kill()
        for w in workers:
            w.stop()
    assert views_fresh(USING)
    assert set(ViewState.objects.using(USING).values_list("status", flat=True)) == {"fresh"}
    totals = [line.split() for out in outputs for line in out.splitlines() if "writes=" in line]
    writes = sum(int(t[0].split("=")[1]) for t in totals)
    refused = sum(int(t[1].split("=")[1]) for t in totals)
    applied = [w.log().count("apply_views[") for w in workers]
    print(
        f"\nFAULTS concurrency writers={WRITERS} workers={WORKERS} secs={DURATION_SECS} "
        f"writes={writes} writes_refused_by_deadlock={refused} changes_lost=0"
    )
    assert writes > 0 and all(applied), applied  # both workers took part


def test_a_worker_killed_holding_a_view_blocks_it_only_while_its_backend_lives(
    tmp_path: Path,
) -> None:
    require_broker()
    _seed()
    view = incremental.product_quantities
    assert view.graph is not None
    table = view.graph.states[0].name
    queue = new_queue()
    first = Worker(queue, tmp_path / "first.log")
    second = Worker(queue, tmp_path / "second.log")
    admin = _psycopg(autocommit=True)
    locker = _psycopg()
    try:
        first.start()
        first.wait_ready()
        locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        with override_settings(STEPPING={"EAGER": False, "QUEUE": queue}):
            LineItem.objects.using(USING).update(qty=42)
        deadline = time.monotonic() + 60
        while not admin.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND NOT l.granted",
            [table],
        ).fetchone():
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.05)
        first.kill()  # dies inside the apply, holding the view's row lock
        second.start()
        second.wait_ready()

        def claimed() -> bool:
            with admin.transaction():
                try:
                    admin.execute(
                        "SELECT 1 FROM stepping_django_viewstate WHERE view = %s FOR UPDATE NOWAIT",
                        [view.label],
                    )
                except psycopg.errors.LockNotAvailable:
                    return True
            return False

        # The dead worker's backend still waits on the table: the view stays claimed, and
        # the second worker reports it busy (its task comes back every RETRY_BUSY_SECS).
        assert claimed()
        assert Outbox.objects.using(USING).filter(view=view.label).exists()
        locker.commit()  # the backend's wait ends; it finds its client gone and exits
        wait_fresh(USING, [second], poke=lambda: send_sweep(queue))
        assert not claimed()
    finally:
        locker.close()
        admin.close()
        first.stop()
        second.stop()
    assert views_fresh(USING)


def test_a_second_applier_of_a_view_being_applied_reports_busy_and_applies_nothing() -> None:
    """Two appliers never apply one view at once: while one is inside an iteration (held
    there by a lock the test takes on one of the view's tables), another finds the view
    claimed, returns "busy" without touching it, and the first then applies everything."""
    import threading

    from django.db import connections as conns

    from stepping_django.apply import apply_view

    _seed()
    view = incremental.product_quantities
    assert view.graph is not None
    table = view.graph.states[0].name
    admin = _psycopg(autocommit=True)
    locker = _psycopg()
    results: list[Any] = []

    def first() -> None:
        try:
            results.append(apply_view(view, using=USING))
        finally:
            conns.close_all()

    try:
        locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        with override_settings(STEPPING={"EAGER": False, "QUEUE": new_queue()}):
            LineItem.objects.using(USING).update(qty=5)
        pending = Outbox.objects.using(USING).filter(view=view.label).count()
        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 60
        while not admin.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND NOT l.granted",
            [table],
        ).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time_before = ViewState.objects.using(USING).get(view=view.label).time
        second = apply_view(view, using=USING)
        assert (second.status, second.keys, second.iterations) == ("busy", 0, 0)
        assert ViewState.objects.using(USING).get(view=view.label).time == time_before
        assert Outbox.objects.using(USING).filter(view=view.label).count() == pending
        locker.commit()
        thread.join(timeout=60)
        (result,) = results
        assert result.status == "fresh" and result.keys == pending
    finally:
        locker.close()
        admin.close()
    assert view.maintained(USING) == view.from_scratch(USING)
