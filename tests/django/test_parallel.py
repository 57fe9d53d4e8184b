"""Parallel application (pipeline.py): successive batches of one view applied by several
workers at once, with pipelined times, on the real Postgres, Redis and Celery workers.

- pipelining: worker A's batch t is held inside its iteration (the test locks a table of
  the view's group sum, downstream of the join); worker B claims batch t+1, commits the
  join's tables at t+1 and waits for A; once released both finish, in order;
- a stream of ORM writes with two workers applying: the parallel view (and every other
  view) ends equal to a from-scratch computation, with an empty outbox;
- a batch failing part-way (the view's function raises on a row after the join's tables
  committed): the view is marked failed, and once the row is fixed it is rebuilt and fresh;
- a worker SIGKILLed in the middle of a batch: the next claim finds the batch's lock free,
  the view is rebuilt, nothing lost or doubled;
- SQLite: the system check and the apply refuse a parallel view.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.test import override_settings

import stepping_django
from stepping_django.apply import apply_view
from stepping_django.checks import check_views
from stepping_django.declare import IncrementalView
from stepping_django.models import Outbox, ViewState
from stepping_django.pipeline import close_connections
from stepping_django.pipeline_models import PipelineBatch
from tests.django.conftest import assert_views_fresh, registered
from tests.django.faults import (
    USING,
    Worker,
    blocked_backend,
    new_queue,
    random_write,
    require_broker,
    send_sweep,
    wait_fresh,
)
from tests.testapp.models import Basket, LineItem, Product

pytestmark = [pytest.mark.postgres]
on_postgres = pytest.mark.django_db(transaction=True, databases=["default", USING])


@pytest.fixture
def parallel_view() -> Iterator[IncrementalView]:
    """The parallel view, registered while the test runs."""
    from tests.testapp import parallel_views

    try:
        with registered(parallel_views.parallel_totals) as view:
            yield view
    finally:
        close_connections()


def _seed(n_products: int = 20, n_baskets: int = 10) -> None:
    products = [
        Product.objects.using(USING).create(name=f"p{i}", price=i) for i in range(n_products)
    ]
    for i in range(n_baskets):
        b = Basket.objects.using(USING).create(customer=f"c{i}")
        for p in products[i : i + 3]:
            LineItem.objects.using(USING).create(basket=b, product=p, qty=i % 9 + 1)
    stepping_django.apply_pending(USING)


def _admin() -> psycopg.Connection[Any]:
    p = connections[USING].get_connection_params()
    return psycopg.connect(
        host=p["host"], port=p["port"], dbname=p["dbname"], user=p["user"], autocommit=True
    )


def _times(view: IncrementalView) -> dict[str, int]:
    assert view.graph is not None
    names = [s.name for s in view.graph.states]
    with connections[USING].cursor() as cursor:
        cursor.execute("SELECT table_name, t FROM last_update WHERE table_name = ANY(%s)", [names])
        return dict(cursor.fetchall())


def _stateful(view: IncrementalView) -> tuple[list[str], list[str]]:
    """The state tables of the join (upstream) and of the group sum (downstream)."""
    assert view.graph is not None
    with_states = [v for v in view.graph.vertices if v.states]
    return [s.name for s in with_states[0].states], [s.name for s in with_states[-1].states]


def _state(view: IncrementalView) -> ViewState:
    return ViewState.objects.using(USING).get(view=view.label)


# -- in-process: a batch failing part-way ------------------------------------------------


@on_postgres
def test_a_batch_failing_part_way_is_recovered_by_a_rebuild(
    parallel_view: IncrementalView,
) -> None:
    from tests.testapp.parallel_views import FAIL_QTY

    _seed()
    assert_views_fresh(USING)
    start = _state(parallel_view)
    assert start.status == ViewState.FRESH and start.time > 0
    join, group = _stateful(parallel_view)
    basket = Basket.objects.using(USING).first()
    product = Product.objects.using(USING).first()
    # EAGER: applied on commit; the group sum raises after the join's tables committed.
    bad = LineItem.objects.using(USING).create(basket=basket, product=product, qty=FAIL_QTY)
    state = _state(parallel_view)
    assert state.status == ViewState.FAILED, state
    assert "refusing line item" in state.error
    times = _times(parallel_view)
    t = start.time + 1
    assert all(times[n] == t for n in join), times  # committed part-way ...
    assert all(times[n] == t - 1 for n in group), times  # ... and not further
    (failed,) = PipelineBatch.objects.using(USING).filter(view=parallel_view.label)
    assert failed.time == t and "refusing line item" in failed.error
    # More writes while the view is failed wait in the outbox: no batch is claimed.
    LineItem.objects.using(USING).filter(qty=1).update(qty=2)
    assert Outbox.objects.using(USING).filter(view=parallel_view.label).exists()
    # Fixed: the next apply rebuilds the view into fresh tables, then applies the rest.
    bad.qty = FAIL_QTY + 1
    bad.save(using=USING)
    state = _state(parallel_view)
    assert state.status == ViewState.FRESH, state.error
    assert state.tables != start.tables  # rebuilt
    assert not PipelineBatch.objects.using(USING).exists()
    assert_views_fresh(USING)
    LineItem.objects.using(USING).filter(qty=3).update(qty=4)  # and it goes on
    assert_views_fresh(USING)


@on_postgres
def test_applying_in_process_drains_in_pipelined_batches(parallel_view: IncrementalView) -> None:
    _seed()
    items = list(LineItem.objects.using(USING).order_by("pk").values_list("pk", flat=True))
    with override_settings(STEPPING={"EAGER": False, "BATCH_SIZE": 7}):
        for i in range(40):
            pks = [items[i % len(items)], items[(i + 5) % len(items)]]
            LineItem.objects.using(USING).filter(pk__in=pks).update(qty=i % 9 + 1)
        Product.objects.using(USING).filter(name__in=["p1", "p2", "p3"]).update(price=99)
        before = _state(parallel_view).time
        result = apply_view(parallel_view, USING)
    assert result.status == "fresh" and result.batches > 3, result
    after = _state(parallel_view).time
    assert after - before == result.iterations
    times = _times(parallel_view)
    assert set(times.values()) == {after}
    assert not PipelineBatch.objects.using(USING).exists()
    assert parallel_view.maintained(USING) == parallel_view.from_scratch(USING)
    stepping_django.apply_pending(USING)  # the other views
    assert_views_fresh(USING)


def _drop_queue(queue: str) -> None:
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
    except redis.RedisError:
        pass  # no broker here: nothing was sent


@pytest.mark.django_db(databases=["default", USING])
def test_inside_a_transaction_it_is_applied_one_batch_at_a_time(
    parallel_view: IncrementalView,
) -> None:
    """A TestCase-style transaction: a connection of its own would not see its writes."""
    _seed()  # applied by apply_pending, inside the test's transaction
    LineItem.objects.using(USING).filter(qty=1).update(qty=3)
    stepping_django.apply_pending(USING)
    assert not PipelineBatch.objects.using(USING).exists()
    assert _state(parallel_view).status == ViewState.FRESH
    assert_views_fresh(USING)


# -- SQLite is refused ---------------------------------------------------------------------


@pytest.mark.django_db(databases=["default"])
def test_sqlite_refuses_a_parallel_view(parallel_view: IncrementalView) -> None:
    messages = [m for m in check_views(views=[parallel_view]) if m.id == "stepping_django.E011"]
    assert [m.msg for m in messages] == [
        "view testapp.parallel_totals is declared parallel=True, which needs PostgreSQL; "
        "database 'default' is sqlite: its batches would be refused there"
    ]
    result = apply_view(parallel_view, "default")
    assert result.status == "failed"
    assert "parallel=True, which needs PostgreSQL" in result.error
    state = ViewState.objects.using("default").get(view=parallel_view.label)
    assert state.status == ViewState.FAILED and "needs PostgreSQL" in state.error


# -- Celery workers ------------------------------------------------------------------------


def _workers(tmp_path: Path, n: int) -> tuple[str, list[Worker]]:
    """`n` Celery workers on a new queue that also maintain the parallel view."""
    require_broker()
    queue = new_queue()
    workers = [Worker(queue, tmp_path / f"worker{i}.log") for i in range(n)]
    for w in workers:
        w.env["STEPPING_TEST_PARALLEL"] = "1"
        w.start()
    for w in workers:
        w.wait_ready()
    return queue, workers


def _writing(queue: str) -> Any:
    """Writes whose tasks go to `queue`, sent in the commit (a background send could run
    after the override ends, to the default queue)."""
    return override_settings(STEPPING={"EAGER": False, "QUEUE": queue, "BACKGROUND_SEND": False})


def _until(condition: Any, what: str, workers: list[Worker], secs: float = 60) -> None:
    deadline = time.monotonic() + secs
    while not condition():
        assert time.monotonic() < deadline, f"{what}; logs:\n" + "\n".join(w.log() for w in workers)
        time.sleep(0.02)


@on_postgres
def test_two_workers_apply_successive_batches_of_one_view_at_once(
    parallel_view: IncrementalView, tmp_path: Path
) -> None:
    _seed()
    t = _state(parallel_view).time
    join, group = _stateful(parallel_view)
    queue, workers = _workers(tmp_path, 2)
    admin = _admin()
    locker = _admin()
    locker.autocommit = False
    try:
        # Hold the group sum's table: the first batch stops there, its join committed.
        locker.execute(f'LOCK TABLE "{group[0]}" IN ACCESS EXCLUSIVE MODE')
        with _writing(queue):
            LineItem.objects.using(USING).filter(qty=1).update(qty=5)
        _until(lambda: blocked_backend(admin, group[0]), "batch t+1 never blocked", workers)
        assert all(_times(parallel_view)[n] == t + 1 for n in join)
        # The second batch, on the other worker, overtakes it on the join's tables.
        with _writing(queue):
            LineItem.objects.using(USING).filter(qty=2).update(qty=6)
        _until(
            lambda: all(_times(parallel_view)[n] == t + 2 for n in join),
            "batch t+2 never reached the join",
            workers,
        )
        in_flight = sorted(PipelineBatch.objects.using(USING).values_list("time", flat=True))
        assert in_flight == [t + 1, t + 2]
        assert all(_times(parallel_view)[n] == t for n in group)
        locker.commit()  # release: t+1 finishes, then t+2
        wait_fresh(USING, workers)
    finally:
        locker.close()
        admin.close()
        for w in workers:
            w.stop()
    state = _state(parallel_view)
    assert state.status == ViewState.FRESH and state.time == t + 2, state
    assert set(_times(parallel_view).values()) == {t + 2}
    assert not PipelineBatch.objects.using(USING).exists()
    assert_views_fresh(USING)


WRITES = 1500


@on_postgres
@pytest.mark.broker
@pytest.mark.long
def test_a_stream_of_writes_applied_by_two_workers_ends_equal_to_from_scratch(
    parallel_view: IncrementalView, tmp_path: Path
) -> None:
    _seed()
    start = _state(parallel_view)
    queue, workers = _workers(tmp_path, 2)
    rng = random.Random(5)
    writes = most_in_flight = 0
    try:
        with _writing(queue):
            while writes < WRITES:
                writes += random_write(rng)
                most_in_flight = max(
                    most_in_flight,
                    PipelineBatch.objects.using(USING).filter(view=parallel_view.label).count(),
                )
        wait_fresh(USING, workers, poke=lambda: send_sweep(queue))
    finally:
        for w in workers:
            w.stop()
    state = _state(parallel_view)
    assert state.status == ViewState.FRESH and state.tables == start.tables  # no rebuild
    assert not PipelineBatch.objects.using(USING).exists()
    assert_views_fresh(USING)
    print(
        f"\nPARALLEL orm_rows_written={writes} batches={state.time - start.time} "
        f"most_batches_in_flight={most_in_flight} changes_lost=0"
    )


@on_postgres
@pytest.mark.broker
def test_a_worker_killed_mid_batch_costs_a_rebuild_and_loses_nothing(
    parallel_view: IncrementalView, tmp_path: Path
) -> None:
    _seed()
    start = _state(parallel_view)
    join, group = _stateful(parallel_view)
    queue, workers = _workers(tmp_path, 1)
    (worker,) = workers
    admin = _admin()
    locker = _admin()
    locker.autocommit = False
    try:
        locker.execute(f'LOCK TABLE "{group[0]}" IN ACCESS EXCLUSIVE MODE')
        with _writing(queue):
            LineItem.objects.using(USING).filter(qty=1).update(qty=7)
        _until(lambda: blocked_backend(admin, group[0]), "the batch never blocked", workers)
        assert all(_times(parallel_view)[n] == start.time + 1 for n in join)  # part-way
        worker.kill()
        # Its backend ends once its statement does (README, Faults): the batch's lock goes.
        locker.commit()
        _until(lambda: not blocked_backend(admin, group[0]), "the backend never ended", workers)
        assert PipelineBatch.objects.using(USING).filter(time=start.time + 1).exists()
        worker.start()
        worker.wait_ready()
        with _writing(queue):  # the next claim finds the dead batch: rebuild, then apply
            LineItem.objects.using(USING).filter(qty=2).update(qty=8)
        wait_fresh(USING, workers, poke=lambda: send_sweep(queue))
    finally:
        locker.close()
        admin.close()
        worker.stop()
    state = _state(parallel_view)
    assert state.status == ViewState.FRESH and state.tables != start.tables  # rebuilt
    assert not PipelineBatch.objects.using(USING).exists()
    assert_views_fresh(USING)


@on_postgres
@pytest.mark.broker
def test_a_backlog_found_by_one_task_is_shared_by_the_workers(
    parallel_view: IncrementalView, tmp_path: Path
) -> None:
    _seed()
    baskets = list(Basket.objects.using(USING).all())
    products = list(Product.objects.using(USING).all())
    require_broker()
    queue = new_queue()
    with _writing(queue):  # no worker yet: a backlog of 2,400 keys
        LineItem.objects.using(USING).bulk_create(
            [
                LineItem(basket=baskets[i % 10], product=products[i % 20], qty=i % 9 + 1)
                for i in range(2400)
            ]
        )
    _drop_queue(queue)  # the commit's task is lost: the sweep finds the backlog
    workers = [Worker(queue, tmp_path / f"worker{i}.log") for i in range(2)]
    for w in workers:
        w.env["STEPPING_TEST_PARALLEL"] = "1"
        w.start()
    try:
        for w in workers:
            w.wait_ready()
        send_sweep(queue)  # one task; each full batch of the view sends one more
        wait_fresh(USING, workers)
        # The other worker took a task that the sweep's worker sent.
        assert all("] received" in w.log() for w in workers), [w.log() for w in workers]
        assert any("stepping_django.apply_views[" in w.log() for w in workers)
    finally:
        for w in workers:
            w.stop()
    assert not PipelineBatch.objects.using(USING).exists()
    assert_views_fresh(USING)
