"""maintenance.rebuild / build.py: a rebuild while another thread writes (and applies) ends
equal to a from-scratch computation, on SQLite and Postgres."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction
from django.test import override_settings

import stepping_django
from stepping_django import engine as st
from stepping_django import maintenance
from stepping_django.apply import apply_view
from stepping_django.declare import IncrementalView
from stepping_django.models import Outbox, Snapshot, ViewState
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

#: Generous: the writer only has to run a few dozen small transactions.
WAIT_SECS = 120


def retry(using: str, work: Callable[[], Any]) -> None:
    """Run `work` in a transaction, again if SQLite's shared in-memory database reports a
    table locked by the other thread (it has no busy timeout)."""
    for _ in range(200):
        try:
            with transaction.atomic(using=using):
                work()
            return
        except OperationalError as e:
            if "locked" not in str(e):
                raise
            threading.Event().wait(0.01)
    raise AssertionError("the database stayed locked")


def writes(using: str, rng: random.Random, n: int) -> None:
    """`n` small transactions of every kind, on rows the backfill has read and not read."""
    items = LineItem.objects.using(using)
    for i in range(n):
        pks = sorted(items.values_list("pk", flat=True))
        early, late = pks[i % 5], pks[-1 - i % 5]
        kind = i % 5
        if kind == 0:
            retry(using, lambda: items.filter(pk=early).update(qty=rng.randint(1, 9)))
        elif kind == 1:
            retry(using, lambda: items.filter(pk=late).update(qty=rng.randint(1, 9)))
        elif kind == 2:
            basket, product = (
                Basket.objects.using(using).first(),
                Product.objects.using(using).last(),
            )
            retry(
                using, lambda: items.create(basket=basket, product=product, qty=rng.randint(1, 9))
            )
        elif kind == 3:
            retry(using, lambda: items.get(pk=pks[len(pks) // 2]).delete())
        else:
            first = Product.objects.using(using).order_by("pk")[:1]
            retry(
                using,
                lambda: (
                    Product.objects.using(using)
                    .filter(pk__in=first)
                    .update(price=rng.randint(1, 9))
                ),
            )


@pytest.mark.django_db(transaction=True)
def test_rebuild_while_another_thread_writes_equals_from_scratch(using: str) -> None:
    view = incremental.basket_totals
    rng = random.Random(7)
    concurrent = connections[using].vendor == "postgresql"  # SQLite: one writer at a time
    with override_settings(STEPPING={"EAGER": True, "BATCH_SIZE": 10}):
        products = [
            Product.objects.using(using).create(name=f"p{i}", price=i + 1) for i in range(3)
        ]
        baskets = [Basket.objects.using(using).create(customer=c) for c in "abcd"]
        LineItem.objects.using(using).bulk_create(
            [
                LineItem(basket=baskets[i % 4], product=products[i % 3], qty=1 + i % 5)
                for i in range(80)
            ]
        )
        stepping_django.apply_pending(using)
        start, wrote, errors = threading.Event(), threading.Event(), []

        def writer() -> None:
            try:
                assert start.wait(WAIT_SECS)
                writes(using, rng, 10)  # while the backfill waits between two pages
                wrote.set()
                if concurrent:
                    writes(using, rng, 15)  # while it goes on
            except BaseException as e:
                errors.append(e)
                wrote.set()
            finally:
                connections.close_all()

        def progress(done: int, total: int) -> None:
            if done >= 40 and not start.is_set():  # half the line items read
                start.set()
                assert wrote.wait(WAIT_SECS), "the writer did not write"

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            result = maintenance.rebuild(view, using, progress=progress)
        finally:
            start.set()
            thread.join(WAIT_SECS)
        assert not errors, errors
        assert result.build.status == "built"
        # The writer's own applies ran during the build and handed their keys to it.
        stepping_django.apply_pending(using)
    assert view.maintained(using) == view.from_scratch(using)
    assert maintenance.verify(view, using).ok
    assert not Outbox.objects.using(using).exists()
    state = ViewState.objects.using(using).get(pk=view.label)
    assert state.tables == result.build.tag and not state.building_version
    # The build's snapshot is the view's now: one row per source row.
    live = Snapshot.objects.using(using).filter(view=f"{view.label}#{state.tables}")
    assert (
        live.count() == Product.objects.using(using).count() + LineItem.objects.using(using).count()
    )


@pytest.mark.django_db
def test_a_failing_rebuild_leaves_the_live_view_as_it_was(using: str) -> None:
    Product.objects.using(using).create(name="tv", price=3)
    stepping_django.apply_pending(using)
    view = incremental.checked_prices
    tables = set(connections[using].introspection.table_names())
    Product.objects.using(using).create(name="bad", price=4)
    incremental.FAIL_ON.add("bad")
    try:
        with pytest.raises(ValueError, match="refusing product 'bad'"):
            maintenance.rebuild(view, using)
    finally:
        incremental.FAIL_ON.discard("bad")
    assert set(connections[using].introspection.table_names()) == tables  # build dropped
    state = ViewState.objects.using(using).get(pk=view.label)
    assert state.status == "failed" and not state.building_version and state.tables == ""
    assert list(view.objects.using(using).values_list("price", flat=True)) == [3]
    stepping_django.apply_pending(using)
    assert maintenance.verify(view, using).ok


@pytest.mark.django_db
def test_a_second_build_waits_for_a_running_one(using: str) -> None:
    from stepping_django.build import build_view

    Product.objects.using(using).create(name="tv", price=3)
    stepping_django.apply_pending(using)
    view = incremental.checked_prices
    seen: list[str] = []

    def progress(done: int, total: int) -> None:
        if not seen:
            seen.append(build_view(view, using).status)  # another build meanwhile

    first = build_view(view, using, progress=progress)
    assert seen == ["building"] and first.status == "built"
    assert maintenance.verify(view, using).ok


@pytest.mark.django_db
def test_a_build_whose_process_died_is_forgotten_and_pruned(using: str) -> None:
    from stepping_django import build

    tv = Product.objects.using(using).create(name="tv", price=3)
    stepping_django.apply_pending(using)
    view = incremental.checked_prices
    tag = build._start(view, using, force=False)  # a build that never gets further
    assert tag and build.tag_tables(view, tag, using)
    Product.objects.using(using).filter(pk=tv.pk).update(price=4)
    stepping_django.apply_pending(using)  # the live applier hands the key to the build
    assert Outbox.objects.using(using).filter(build=tag).count() == 1
    assert maintenance.status(using, [view])[0].state == "applying"
    ViewState.objects.using(using).filter(pk=view.label).update(
        build_heartbeat_at="2000-01-01T00:00:00Z"
    )
    Product.objects.using(using).filter(pk=tv.pk).update(price=5)
    stepping_django.apply_pending(using)
    assert not Outbox.objects.using(using).exists()
    assert maintenance.status(using, [view])[0].state == "fresh"
    assert list(view.objects.using(using).values_list("price", flat=True)) == [5]
    dead = set(build.tag_tables(view, tag, using))
    assert dead == {build.output_table(view, tag)}  # a map keeps no state tables
    (pruned,) = maintenance.prune([view], using)
    assert set(pruned.tables) == dead and not build.tag_tables(view, tag, using)


class Third(st.Data):
    product_id: int
    third: float


def thirds(products: st.ZSet[Product]) -> st.ZSet[Third]:
    return st.map(products, f=lambda p: Third(product_id=p.id, third=p.price / 3))


@pytest.mark.django_db
def test_verify_compares_floats_within_a_tolerance(using: str) -> None:
    view = IncrementalView(thirds, app_label="t")
    tv = Product.objects.using(using).create(name="tv", price=10)
    assert apply_view(view, using).status == "fresh"
    assert maintenance.verify(view, using).ok

    def scale(factor: float) -> None:
        with connections[using].cursor() as cursor:
            cursor.execute(f"UPDATE {view.model._meta.db_table} SET third = third * {factor}")

    scale(1 + 1e-13)  # the last bits, as a sum kept in another order may differ
    assert maintenance.verify(view, using).ok
    exact = maintenance.verify(view, using, rel_tol=0)
    assert not exact.ok and len(exact.extra) == len(exact.missing) == len(exact.inconsistent) == 1
    scale(1.001)
    off = maintenance.verify(view, using)
    assert off.missing == [(Third(product_id=tv.pk, third=10 / 3), 1)] and len(off.extra) == 1
