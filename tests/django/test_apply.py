"""apply.py: every view equals a from-scratch computation after any mix of writes, on
SQLite and Postgres; applying is idempotent and batched; a failing view recovers."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections, transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import stepping_django
from stepping_django.apply import apply_view
from stepping_django.models import Outbox, Snapshot, ViewState
from tests.django.conftest import assert_views_fresh
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

pytestmark = pytest.mark.django_db

idx = hs.integers(0, 7)
price = hs.integers(1, 9)
qty = hs.integers(1, 4)

write_ops = hs.one_of(
    hs.tuples(hs.just("create_product"), price),
    hs.tuples(hs.just("create_basket")),
    hs.tuples(hs.just("create_item"), idx, idx, qty),
    hs.tuples(hs.just("save_product"), idx, price),
    hs.tuples(hs.just("save_item"), idx, qty),
    hs.tuples(hs.just("delete_product"), idx),
    hs.tuples(hs.just("delete_basket"), idx),
    hs.tuples(hs.just("delete_item"), idx),
    hs.tuples(hs.just("qs_update_prices"), price, price),
    hs.tuples(hs.just("bulk_create_items"), hs.lists(hs.tuples(idx, idx, qty), max_size=3)),
    hs.tuples(hs.just("bulk_update_items"), hs.lists(hs.tuples(idx, qty), max_size=3)),
    hs.tuples(hs.just("qs_delete_items"), qty),
    hs.tuples(hs.just("raw_update_qty"), idx, qty),
    hs.tuples(hs.just("raw_delete_item"), idx),
)
ops = hs.lists(
    hs.one_of(
        write_ops,
        hs.tuples(hs.just("apply")),
        hs.tuples(hs.just("rolled_back"), hs.lists(write_ops, min_size=1, max_size=4)),
    ),
    max_size=14,
)


def _pick(model: Any, using: str, i: int) -> Any:
    rows = list(model.objects.using(using).order_by("pk"))
    return rows[i % len(rows)] if rows else None


def run(op: tuple[Any, ...], using: str) -> None:
    kind, *args = op
    products, baskets, items = (m.objects.using(using) for m in (Product, Basket, LineItem))
    if kind == "create_product":
        products.create(name=f"p{args[0]}", price=args[0])
    elif kind == "create_basket":
        baskets.create(customer="c")
    elif kind == "create_item":
        b, p = _pick(Basket, using, args[0]), _pick(Product, using, args[1])
        if b and p:
            items.create(basket=b, product=p, qty=args[2])
    elif kind == "save_product":
        if p := _pick(Product, using, args[0]):
            p.price = args[1]
            p.save()
    elif kind == "save_item":
        if li := _pick(LineItem, using, args[0]):
            li.qty = args[1]
            li.save(update_fields=["qty"])
    elif kind in ("delete_product", "delete_basket", "delete_item"):
        model = {"delete_product": Product, "delete_basket": Basket, "delete_item": LineItem}[kind]
        if row := _pick(model, using, args[0]):
            row.delete()  # cascades to line items
    elif kind == "qs_update_prices":
        products.filter(price__gte=args[0]).update(price=args[1])
    elif kind == "bulk_create_items":
        new = []
        for b_i, p_i, q in args[0]:
            b, p = _pick(Basket, using, b_i), _pick(Product, using, p_i)
            if b and p:
                new.append(LineItem(basket=b, product=p, qty=q))
        items.bulk_create(new)
    elif kind == "bulk_update_items":
        changed = []
        for i, q in args[0]:
            if li := _pick(LineItem, using, i):
                li.qty = q
                changed.append(li)
        items.bulk_update(changed, ["qty"])
    elif kind == "qs_delete_items":
        items.filter(qty=args[0]).delete()
    elif kind in ("raw_update_qty", "raw_delete_item"):
        if li := _pick(LineItem, using, args[0]):
            with connections[using].cursor() as cursor:
                if kind == "raw_update_qty":
                    cursor.execute(
                        "UPDATE testapp_lineitem SET qty = %s WHERE id = %s", [args[1], li.pk]
                    )
                else:
                    cursor.execute("DELETE FROM testapp_lineitem WHERE id = %s", [li.pk])
            stepping_django.notify(LineItem, [li.pk], using=using)
    elif kind == "apply":
        stepping_django.apply_pending(using)
    elif kind == "rolled_back":
        with pytest.raises(RuntimeError), transaction.atomic(using=using):
            for sub in args[0]:
                run(sub, using)
            raise RuntimeError("roll back")
    else:
        raise AssertionError(kind)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_views_equal_from_scratch_after_any_writes(using: str, ops: list[Any]) -> None:
    """On Postgres, captured by the triggers (with signals scheduling)."""
    _any_writes(using, ops)


@pytest.mark.usefixtures("signal_capture")
@pytest.mark.parametrize("using", ["postgres"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_views_equal_from_scratch_after_any_writes_captured_by_signals(
    using: str, ops: list[Any]
) -> None:
    """Postgres without its capture triggers: signals and StepManager insert the keys."""
    _any_writes(using, ops)


def _any_writes(using: str, ops: list[Any]) -> None:
    with transaction.atomic(using=using):
        _shop(using)
        if ops and ops[0] == ("apply",):
            stepping_django.apply_pending(using)
        for op in ops:
            run(op, using)
        results = stepping_django.apply_pending(using)
        assert {r.status for r in results.values()} == {"fresh"}
        assert_views_fresh(using)
        transaction.set_rollback(True, using=using)


def _shop(using: str) -> tuple[Product, Product, Basket]:
    """Two products in one basket: 1 tv at 3 and 4 radios at 5, total 23."""
    tv = Product.objects.using(using).create(name="tv", price=3)
    radio = Product.objects.using(using).create(name="radio", price=5)
    basket = Basket.objects.using(using).create(customer="ann")
    LineItem.objects.using(using).create(basket=basket, product=tv, qty=1)
    LineItem.objects.using(using).create(basket=basket, product=radio, qty=4)
    return tv, radio, basket


def test_applying_twice_or_duplicate_keys_changes_nothing(using: str) -> None:
    tv, _, basket = _shop(using)
    stepping_django.apply_pending(using)
    assert incremental.basket_totals.objects.using(using).get().total == 23
    time = ViewState.objects.using(using).get(view="testapp.basket_totals").time
    # The same key captured again (and twice) with no change to its row: nothing to do.
    stepping_django.notify(Product, [tv.pk, tv.pk], using=using)
    stepping_django.notify(Product, None, using=using)
    results = stepping_django.apply_pending(using)
    assert results["testapp.basket_totals"].keys == 2
    assert results["testapp.basket_totals"].iterations == 0
    assert ViewState.objects.using(using).get(view="testapp.basket_totals").time == time
    assert incremental.basket_totals.objects.using(using).get().total == 23
    assert_views_fresh(using)


def test_a_batch_is_one_iteration_with_the_next_time(using: str) -> None:
    _shop(using)
    stepping_django.apply_pending(using)
    before = ViewState.objects.using(using).get(view="testapp.basket_totals").time
    with override_settings(STEPPING={"EAGER": True, "BATCH_SIZE": 2}):
        Product.objects.using(using).update(price=1)  # 2 keys
        LineItem.objects.using(using).update(qty=2)  # 2 keys
        result = apply_view("testapp.basket_totals", using=using)
    assert (result.keys, result.iterations) == (4, 2)
    assert ViewState.objects.using(using).get(view="testapp.basket_totals").time == before + 2
    assert incremental.basket_totals.objects.using(using).get().total == 4
    stepping_django.apply_pending(using)  # the other views
    assert_views_fresh(using)


def test_snapshot_holds_the_last_applied_row_per_key(using: str) -> None:
    tv, radio, _ = _shop(using)
    stepping_django.apply_pending(using)
    snaps = Snapshot.objects.using(using).filter(view="testapp.checked_prices")
    assert sorted(snaps.values_list("object_pk", flat=True)) == sorted([str(tv.pk), str(radio.pk)])
    tv.delete()
    stepping_django.apply_pending(using)
    assert list(snaps.values_list("object_pk", flat=True)) == [str(radio.pk)]


def test_failing_view_keeps_its_changes_and_recovers(using: str) -> None:
    _shop(using)
    stepping_django.apply_pending(using)
    incremental.FAIL_ON.add("bad")
    try:
        Product.objects.using(using).create(name="bad", price=7)
        results = stepping_django.apply_pending(using)
        failed = results["testapp.checked_prices"]
        assert failed.status == "failed" and "refusing product 'bad'" in failed.error
        state = ViewState.objects.using(using).get(view="testapp.checked_prices")
        assert state.status == ViewState.FAILED
        assert "refusing product 'bad'" in state.error
        assert "_checked" in state.traceback  # the user's function is in the traceback
        assert Outbox.objects.using(using).filter(view="testapp.checked_prices").count() == 1
        assert incremental.checked_prices.objects.using(using).count() == 2
        # The other views went on.
        for label in ("testapp.basket_totals", "testapp.product_quantities"):
            assert results[label].status == "fresh"
            assert ViewState.objects.using(using).get(view=label).status == ViewState.FRESH
        # Still failing on the next write: still failed, nothing lost.
        Product.objects.using(using).filter(name="tv").update(price=4)
        assert stepping_django.apply_pending(using)["testapp.checked_prices"].status == "failed"
    finally:
        incremental.FAIL_ON.discard("bad")
    results = stepping_django.apply_pending(using)
    assert results["testapp.checked_prices"].status == "fresh"
    state = ViewState.objects.using(using).get(view="testapp.checked_prices")
    assert (state.status, state.error, state.traceback) == (ViewState.FRESH, "", "")
    prices = incremental.checked_prices.objects.using(using).order_by("price")
    assert list(prices.values_list("price", flat=True)) == [4, 5, 7]
    assert_views_fresh(using)


def test_a_new_version_of_a_view_is_rebuilt_from_the_tables(using: str) -> None:
    _shop(using)
    stepping_django.apply_pending(using)
    view = incremental.checked_prices
    old_version = view.version
    # Simulate a deploy that changed the view: its stored version no longer matches.
    ViewState.objects.using(using).filter(view=view.label).update(graph_identifier="old")
    with connections[using].cursor() as cursor:  # and its cache holds rows of the old one
        cursor.execute(f"DELETE FROM {view.model._meta.db_table}")
    result = apply_view(view, using=using)
    assert result.rebuilt and result.status == "fresh"
    assert ViewState.objects.using(using).get(view=view.label).graph_identifier == old_version
    assert view.objects.using(using).count() == 2
    assert_views_fresh(using)


def test_eager_apply_on_commit(using: str, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(using=using, execute=True) as callbacks:
        _shop(using)
    assert callbacks  # EAGER: the views were applied when the writer committed
    assert incremental.basket_totals.objects.using(using).get().total == 23
    assert_views_fresh(using)


def test_rolled_back_writer_leaves_nothing(using: str) -> None:
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=using):
        _shop(using)
        1 / 0  # noqa: B018
    assert not Outbox.objects.using(using).exists()
    stepping_django.apply_pending(using)
    assert not incremental.basket_totals.objects.using(using).exists()


def test_eager_writer_is_not_disturbed_by_a_failing_view(
    using: str, django_capture_on_commit_callbacks: Any
) -> None:
    incremental.FAIL_ON.add("bad")
    try:
        with django_capture_on_commit_callbacks(using=using, execute=True):
            bad = Product.objects.using(using).create(name="bad", price=1)
        assert Product.objects.using(using).filter(pk=bad.pk).exists()  # the write stands
        state = ViewState.objects.using(using).get(view="testapp.checked_prices")
        assert state.status == ViewState.FAILED
        assert ViewState.objects.using(using).get(view="testapp.basket_totals").status == "fresh"
    finally:
        incremental.FAIL_ON.discard("bad")


def test_applied_and_failed_signals(using: str) -> None:
    from stepping_django.signals import view_applied, view_failed

    seen: list[tuple[str, str, Any]] = []

    def on_applied(sender: Any, **kw: Any) -> None:
        seen.append(("applied", sender.label, kw["keys"]))

    def on_failed(sender: Any, **kw: Any) -> None:
        seen.append(("failed", sender.label, type(kw["error"]).__name__))

    view_applied.connect(on_applied)
    view_failed.connect(on_failed)
    incremental.FAIL_ON.add("bad")
    try:
        Product.objects.using(using).create(name="bad", price=1)
        stepping_django.apply_pending(using)
    finally:
        incremental.FAIL_ON.discard("bad")
        view_applied.disconnect(on_applied)
        view_failed.disconnect(on_failed)
    assert sorted(seen) == [
        ("applied", "testapp.basket_totals", 1),
        ("failed", "testapp.checked_prices", "ValueError"),
    ]
