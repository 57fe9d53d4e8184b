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

import subprocess
import sys
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
from stepping_django.registry import registry
from tests.django.conftest import assert_views_fresh
from tests.django.faults import (
    ROOT,
    USING,
    Worker,
    new_queue,
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

    view = parallel_views.parallel_totals
    if view not in registry.all_views():
        registry.register(view)
    try:
        yield view
    finally:
        registry.unregister(view.label)
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
    bad = LineItem.objects.using(USING).create(
        basket=basket, product=product, qty=FAIL_QTY
    )
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
    with override_settings(STEPPING={"EAGER": False, "BATCH_SIZE": 7}):
        for i in range(40):
            LineItem.objects.using(USING).filter(pk__in=[i + 1, i + 5]).update(qty=i % 9 + 1)
        Product.objects.using(USING).filter(pk__lte=5).update(price=99)
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
