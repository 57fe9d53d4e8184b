"""cache_models.py and admin.py: a view's output is an unmanaged model with typed columns,
read through querysets and the admin; delay tables are unmanaged models too."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.db.models import Max, Sum

import stepping_django
from stepping_django.cache_models import state_models
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

pytestmark = pytest.mark.django_db


def shop(using: str) -> None:
    products = [
        Product.objects.using(using).create(name=n, price=p) for n, p in [("tv", 3), ("radio", 5)]
    ]
    for customer, qtys in [("ann", (1, 4)), ("bob", (2, 0)), ("cy", (0, 1))]:
        basket = Basket.objects.using(using).create(customer=customer)
        for product, q in zip(products, qtys):
            if q:
                LineItem.objects.using(using).create(basket=basket, product=product, qty=q)
    stepping_django.apply_pending(using)


def test_querysets_over_the_output(using: str) -> None:
    shop(using)
    totals = incremental.basket_totals.objects.using(using)
    assert list(totals.filter(total__gt=5).order_by("-total").values_list("total", flat=True)) == [
        23,
        6,
    ]
    assert totals.aggregate(s=Sum("total"), m=Max("total")) == {"s": 34, "m": 23}
    assert {row["weight"] for row in totals.values("weight")} == {1}
    radio = Product.objects.using(using).get(name="radio")
    top = incremental.top_quantities.objects.using(using).order_by("-qty")
    assert [(r.qty, str(r)) for r in top][:1] == [(5, f"ProductQty(product_id={radio.pk}, qty=5)")]


def test_output_columns_are_typed(using: str) -> None:
    model = incremental.basket_totals.model
    fields = {f.name: type(f).__name__ for f in model._meta.concrete_fields}
    assert fields == {
        "row_id": "CharField",
        "weight": "BigIntegerField",
        "data": "BinaryField",
        "basket_id": "BigIntegerField",
        "total": "BigIntegerField",
    }
    assert model._meta.managed is False
    assert model not in apps.get_models()  # so no migrations are made for it


def test_delay_tables_are_readable_models(using: str) -> None:
    shop(using)
    view = incremental.basket_totals
    tables = state_models(view)
    assert view.graph is not None and set(tables) == {s.name for s in view.graph.states}
    counts = {name: m.objects.using(using).count() for name, m in tables.items()}
    assert sum(counts.values()) > 0


def test_admin_lists_views_and_their_rows(admin_client: Any) -> None:
    shop("default")
    model = incremental.basket_totals.model
    url = f"/admin/stepping_django/{model._meta.model_name}/"
    index = admin_client.get("/admin/")
    assert index.status_code == 200 and url.encode() in index.content
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"23" in page.content
    states = admin_client.get("/admin/stepping_django/viewstate/")
    assert states.status_code == 200 and b"fresh" in states.content
