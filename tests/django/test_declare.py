"""declare.py, registry.py, rows.py: declaring views, generated row classes, lookups."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from stepping_django import engine as st
from stepping_django import incremental_view
from stepping_django.declare import IncrementalView
from stepping_django.engine.serialize import class_id, class_key, dumps
from stepping_django.registry import ViewNotFound, registry
from stepping_django.rows import attnames, row_class, rows_for_pks
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product


def test_row_class_mirrors_the_concrete_fields() -> None:
    Row = row_class(Product)
    assert Row.__st_fields__ == ("id", "name", "price", "added_on")
    assert class_key(Row) == "stepping_django.rows.testapp.Product"
    assert row_class(Product) is Row
    row = Row(id=1, name="tv", price=3, added_on=None)
    assert row == Row(id=1, name="tv", price=3, added_on=None)
    with pytest.raises(AttributeError):
        row.price = 4  # type: ignore[misc]
    assert attnames(LineItem) == ("id", "basket_id", "product_id", "qty")


def test_row_class_identity_is_the_same_in_another_process() -> None:
    """A worker process declares the same row classes with the same msgpack ids."""
    row = row_class(Product)(id=1, name="tv", price=3, added_on=datetime.date(2026, 1, 2))
    code = (
        "import django, datetime, json; django.setup();"
        "from stepping_django.rows import row_class; from tests.testapp.models import Product;"
        "from stepping_django.engine.serialize import class_id, dumps;"
        "R = row_class(Product);"
        "print(json.dumps([class_id(R), dumps(R(id=1, name='tv', price=3,"
        " added_on=datetime.date(2026, 1, 2))).hex()]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [class_id(type(row)), dumps(row).hex()]


@pytest.mark.django_db
def test_rows_are_read_without_loading_relations(django_assert_num_queries: object) -> None:
    p = Product.objects.create(name="tv", price=3)
    b = Basket.objects.create(customer="ann")
    item = LineItem.objects.create(basket=b, product=p, qty=2)
    with django_assert_num_queries(1):  # type: ignore[operator]
        rows = rows_for_pks(LineItem, [item.pk], "default")
    assert rows == {
        str(item.pk): row_class(LineItem)(id=item.pk, basket_id=b.pk, product_id=p.pk, qty=2)
    }


def test_declared_views_are_registered_with_their_inputs() -> None:
    view = registry.get("testapp.basket_totals")
    assert view is incremental.basket_totals
    assert view.models == [Product, LineItem]
    assert [p.name for p in view.params] == ["products", "line_items"]
    assert view.output_type is incremental.BasketTotal
    assert registry.get("testapp.product_quantities").models == [LineItem]  # "app.Model"
    assert set(registry.reading(LineItem)) >= {view, registry.get("testapp.top_quantities")}
    with pytest.raises(ViewNotFound, match="'testapp.nope'.*testapp.basket_totals"):
        registry.get("testapp.nope")


def test_each_view_has_its_own_tables_even_for_the_same_computation() -> None:
    a, b = incremental.product_quantities, incremental.top_quantities
    assert a.graph is not None and b.graph is not None
    names_a = {s.name for s in a.graph.states}
    names_b = {s.name for s in b.graph.states}
    assert all(n.startswith(a.table_prefix) for n in names_a)
    assert not names_a & names_b
    # ... although both compute the same group sum upstream.
    assert {n[len(a.table_prefix) :] for n in names_a} <= {
        n[len(b.table_prefix) :] for n in names_b
    }


def test_a_view_called_with_zsets_computes_from_scratch() -> None:
    P, L = row_class(Product), row_class(LineItem)
    products = st.ZSetPython({P(id=1, name="tv", price=3, added_on=None): 1})
    items = st.ZSetPython(
        {
            L(id=1, basket_id=7, product_id=1, qty=2): 1,
            L(id=2, basket_id=7, product_id=1, qty=1): 1,
        }
    )
    result = incremental.basket_totals(products, items)
    assert result == st.ZSetPython({incremental.BasketTotal(basket_id=7, total=9): 1})


def test_name_and_app_label_can_be_given() -> None:
    def prices(products: st.ZSet[Product]) -> st.ZSet[incremental.CheckedPrice]:
        return st.map(
            products, f=lambda p: incremental.CheckedPrice(product_id=p.id, price=p.price)
        )

    view = IncrementalView(prices, name="renamed", app_label="elsewhere")
    assert view.label == "elsewhere.renamed" and not view.problems
    assert view.version and view.version != incremental.checked_prices.version


def test_the_decorator_returns_the_registered_view() -> None:
    @incremental_view(name="temporary_view")
    def temporary(products: st.ZSet[Product]) -> st.ZSet[incremental.CheckedPrice]:
        return st.map(products, f=lambda p: incremental.CheckedPrice(product_id=p.id, price=0))

    try:
        assert isinstance(temporary, IncrementalView)
        assert registry.get("tests.temporary_view") is temporary
        assert temporary.objects.model._meta.db_table == "stepping_tests_temporary_view"
    finally:
        registry.unregister("tests.temporary_view")
