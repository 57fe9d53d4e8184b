"""No SQL from user strings without quoting and parameters, through the Django layer:
hostile values in input rows, a model whose table and column names hold quotes,
semicolons, `DROP TABLE` and unicode, and a view whose name would reach a table name
(refused: stepping_django.E010). Every view equals a from-scratch computation afterwards
and every table is still there (SQLite and Postgres).

Django's own `quote_name` does not escape a double quote inside a name (Django does not
support such names), so the hostile model names here hold every other character.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.apps import apps
from django.db import connections, models

import stepping_django
from stepping_django import engine as st
from stepping_django.checks import check_views
from stepping_django.declare import IncrementalView
from stepping_django.registry import registry
from tests.django.conftest import assert_views_fresh
from tests.testapp.models import Basket, LineItem, Product

HOSTILE = [
    "'; DROP TABLE testapp_product; --",
    '"; DROP TABLE testapp_product; --',
    "Robert'); DELETE FROM stepping_django_outbox;--",
    "%s %(x)s ? $1",
    "back\\slash",
    "名前 🧨 ñ",
    "",
]

TABLE = "hostile'; DROP TABLE testapp_product; -- 名"


def hostile_model() -> type[models.Model]:
    """A model whose table and columns are named to break naive SQL (registered for the
    test only: the migrations test must not see it)."""

    class Hostile(models.Model):
        price = models.IntegerField(db_column="pr'ice; DROP TABLE testapp_basket; --")
        label = models.CharField(max_length=100, db_column="名前 ñ")

        class Meta:
            app_label = "testapp"
            db_table = TABLE
            managed = False

    return Hostile


class Priced(st.Data):
    label: str
    price: int


@pytest.fixture
def hostile(using: str) -> Iterator[type[models.Model]]:
    Hostile = hostile_model()

    def hostile_sums(rows: st.ZSet[Hostile]) -> st.ZSet[Priced]:  # type: ignore[valid-type]
        sums = st.group_reduce_flatten(
            rows,
            by=st.Index.pick(Hostile, lambda h: h.label),
            zero=int,
            pick_value=lambda h: h.price,
        )
        return st.map(sums, f=lambda p: Priced(label=p.right, price=p.left))

    connection = connections[using]
    qn = connection.ops.quote_name
    pk = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if connection.vendor == "sqlite"
        else "SERIAL PRIMARY KEY"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {qn(TABLE)} (id {pk}, "
            f"{qn(Hostile._meta.get_field('price').column)} INTEGER NOT NULL, "
            f"{qn(Hostile._meta.get_field('label').column)} VARCHAR(100) NOT NULL)"
        )
    hostile_sums.__annotations__ = {"rows": st.ZSet[Hostile], "return": st.ZSet[Priced]}
    view = IncrementalView(hostile_sums, app_label="testapp")
    registry.register(view)
    try:
        assert not view.problems, view.problems
        yield Hostile
    finally:
        registry.unregister(view.label)
        del apps.all_models["testapp"]["hostile"]
        apps.clear_cache()


def _tables(using: str) -> set[str]:
    return set(connections[using].introspection.table_names())


def test_hostile_values_model_table_and_column_names_are_quoted_and_bound(
    using: str, hostile: type[models.Model]
) -> None:
    Hostile = hostile
    before = _tables(using)
    assert TABLE in before
    basket = Basket.objects.using(using).create(customer=HOSTILE[0])
    for i, text in enumerate(HOSTILE):
        p = Product.objects.using(using).create(name=text[:50], price=i + 1)
        LineItem.objects.using(using).create(basket=basket, product=p, qty=i + 1)
        Hostile.objects.using(using).create(price=i, label=text)
        Hostile.objects.using(using).create(price=10 * i, label=text)
    stepping_django.apply_pending(using)
    assert_views_fresh(using)
    Hostile.objects.using(using).filter(label=HOSTILE[1]).delete()
    Product.objects.using(using).filter(name=HOSTILE[2][:50]).update(name=HOSTILE[3])
    stepping_django.apply_pending(using)
    assert_views_fresh(using)
    view = registry.get("testapp.hostile_sums")
    got = dict(view.objects.using(using).values_list("label", "price"))
    assert got == {t: 11 * i for i, t in enumerate(HOSTILE) if t != HOSTILE[1]}
    assert before <= _tables(using)  # nothing dropped (the view's own tables were added)


@pytest.mark.parametrize(
    "name", ['x"; DROP TABLE testapp_product; --', "x y", "x'y", "x;y", "über-view"]
)
def test_a_view_name_that_is_not_an_identifier_is_refused(name: str) -> None:
    def reads(products: st.ZSet[Product]) -> st.ZSet[Priced]:
        return st.map(products, f=lambda p: Priced(label=p.name, price=p.price))

    view = IncrementalView(reads, name=name, app_label="testapp")
    assert view.graph is None
    (error,) = check_views(views=[view])
    assert error.id == "stepping_django.E010" and repr(name) in error.msg


def _stepping_admin_urls() -> list[str]:
    """The changelist of every model stepping_django registers in the admin (view states,
    outbox, each view's cache), and the change page of one view state."""
    from django.contrib import admin
    from django.urls import reverse

    urls = [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
        if m._meta.app_label == "stepping_django"
    ]
    return urls


@pytest.mark.django_db
def test_no_stepping_admin_page_shows_data_without_permission() -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.testapp import incremental

    tv = Product.objects.create(name="secret-name", price=31337)
    LineItem.objects.create(
        basket=Basket.objects.create(customer="secret-customer"), product=tv, qty=2
    )
    stepping_django.apply_pending()
    Product.objects.create(name="pending", price=4)  # an outbox row (EAGER applies: keep one)
    urls = _stepping_admin_urls()
    # every view's cache, the view states and the outbox are among them
    assert len(urls) >= len(registry.views()) + 2, urls
    assert any("viewstate" in u for u in urls) and any("outbox" in u for u in urls)
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    plain = User.objects.create_user("plain", password="pw")
    for url in urls:
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "/login/" in anonymous["Location"], url
        for user in (staff, plain):
            client = Client()
            client.force_login(user)
            response = client.get(url)
            assert response.status_code in (302, 403), (url, user.username)
            assert b"31337" not in response.content and b"secret" not in response.content
    assert incremental.basket_totals.objects.exists()  # there was data to leak
