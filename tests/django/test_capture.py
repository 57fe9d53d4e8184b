"""capture.py: each kind of write puts the keys it wrote in the outbox of every view that
reads the model, in the writer's transaction. Capture by signals and StepManager, on both
databases (Postgres's capture triggers are tested in test_triggers.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DataError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import stepping_django
from stepping_django.models import Outbox
from tests.testapp.models import Basket, LineItem, PlainNote, Product, ProductProxy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("signal_capture")]

PRODUCT_VIEWS = ["testapp.basket_totals", "testapp.checked_prices"]
LINE_ITEM_VIEWS = ["testapp.basket_totals", "testapp.product_quantities", "testapp.top_quantities"]


def captured(using: str) -> list[tuple[str, str, str | None]]:
    """Outbox entries as (view, model, pk), in capture order, then cleared."""
    outbox = Outbox.objects.using(using)
    rows = list(outbox.order_by("id").values_list("view", "model", "object_pk"))
    outbox.all().delete()
    return rows


def keys(views: list[str], model: str, *pks: object) -> list[tuple[str, str, str | None]]:
    return [(v, model, None if pk is None else str(pk)) for v in views for pk in pks]


def test_create_save_delete_go_through_signals(using: str) -> None:
    p = Product.objects.using(using).create(name="tv", price=3)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    p.price = 4
    p.save()
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    pk = p.pk
    p.delete()
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", pk))


def test_queryset_update_captures_the_rows_it_matched(using: str) -> None:
    a, b, c = (Product.objects.using(using).create(name=n, price=i) for i, n in enumerate("abc"))
    captured(using)
    assert Product.objects.using(using).filter(price__gte=1).update(price=9) == 2
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", b.pk, c.pk))


def test_bulk_create_and_bulk_update(using: str) -> None:
    made = Product.objects.using(using).bulk_create(
        [Product(name="a", price=1), Product(name="b", price=2)]
    )
    pks = [p.pk for p in made]
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", *pks))
    for p in made:
        p.price = 7
    Product.objects.using(using).bulk_update(made, ["price"])
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", *pks))


def test_queryset_delete_captures_each_row_and_the_cascade(using: str) -> None:
    p = Product.objects.using(using).create(name="tv", price=3)
    basket = Basket.objects.using(using).create(customer="ann")
    item = LineItem.objects.using(using).create(basket=basket, product=p, qty=1)
    captured(using)
    Product.objects.using(using).filter(name="tv").delete()
    assert sorted(captured(using)) == sorted(
        keys(PRODUCT_VIEWS, "testapp.Product", p.pk)
        + keys(LINE_ITEM_VIEWS, "testapp.LineItem", item.pk)
    )


def test_notify_for_raw_sql_with_and_without_keys(using: str) -> None:
    p = Product.objects.using(using).create(name="tv", price=3)
    captured(using)
    with connections[using].cursor() as cursor:
        cursor.execute("UPDATE testapp_product SET price = 4 WHERE id = %s", [p.pk])
    stepping_django.notify(Product, [p.pk], using=using)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    stepping_django.notify(Product, using=using)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", None))


def test_a_rolled_back_writer_leaves_no_key(using: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=using):
        Product.objects.using(using).create(name="tv", price=3)
        Product.objects.using(using).update(price=5)
        raise RuntimeError("roll back")
    assert captured(using) == []


def test_models_no_view_reads_are_not_captured(using: str) -> None:
    note = PlainNote.objects.using(using).create(text="x")
    note.delete()
    assert captured(using) == []


def test_writes_through_a_proxy_model_are_captured(using: str) -> None:
    p = ProductProxy.objects.using(using).create(name="tv", price=3)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    pk = p.pk
    p.delete()
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", pk))


def test_the_outbox_insert_is_seen_by_query_capture(using: str) -> None:
    """Capture skips Django's cursor wrapper only when no one watches the queries."""
    with CaptureQueriesContext(connections[using]) as queries:
        Product.objects.using(using).create(name="tv", price=3)
    assert any("stepping_django_outbox" in q["sql"] for q in queries.captured_queries)
    assert len(captured(using)) == len(PRODUCT_VIEWS)


def test_a_capture_in_a_transaction_marked_for_rollback_is_refused(using: str) -> None:
    with transaction.atomic(using=using):
        transaction.set_rollback(True, using=using)
        with pytest.raises(TransactionManagementError):
            stepping_django.notify(Product, [1], using=using)


@pytest.mark.django_db(transaction=True)  # each atomic block its own transaction
@pytest.mark.parametrize("using", ["postgres"])
@pytest.mark.parametrize("first", [True, False], ids=["first-statement", "after-a-write"])
def test_a_database_error_in_the_capture_is_djangos(using: str, first: bool) -> None:
    """Raised as Django's error whether the capture goes through Django's cursor (the
    transaction's first statement) or straight through libpq (after the write)."""
    with pytest.raises(DataError), transaction.atomic(using=using):
        if not first:
            PlainNote.objects.using(using).create(text="x")
        stepping_django.notify(Product, ["x" * 300], using=using)  # object_pk is varchar(255)
    assert captured(using) == []
    assert not PlainNote.objects.using(using).exists()


@pytest.mark.django_db(transaction=True)  # each atomic block its own transaction
def test_a_capture_first_in_its_transaction_is_rolled_back_with_it(using: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=using):
        stepping_django.notify(Product, [1], using=using)  # before any other statement
        raise RuntimeError("roll back")
    assert captured(using) == []


@pytest.mark.parametrize("using", ["postgres"])
def test_with_prepare_threshold_the_insert_is_prepared_once_per_connection(using: str) -> None:
    connection = connections[using]
    connection.ensure_connection()
    raw = connection.connection
    before = raw.prepare_threshold
    raw.prepare_threshold = 5  # as DATABASES[...]["OPTIONS"]["prepare_threshold"] does
    try:
        for name in ("tv", "radio"):
            with transaction.atomic(using=using):
                Product.objects.using(using).create(name=name, price=3)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'stepping_django_%%'"
            )
            assert cursor.fetchone() == (1,)
    finally:
        raw.prepare_threshold = before
    pks = Product.objects.using(using).values_list("pk", flat=True)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", *pks))


def test_created_at_is_the_databases_clock(using: str) -> None:
    before = timezone.now()
    Product.objects.using(using).create(name="tv", price=3)
    stamps = Outbox.objects.using(using).values_list("created_at", flat=True)
    assert stamps and all(before - timedelta(seconds=5) < s < timezone.now() for s in stamps)
