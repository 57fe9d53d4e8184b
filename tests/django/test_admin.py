"""admin.py through Django's test client: read-only pages for view states and each view's
cache, shown to users with the permission to view view states, refused to others."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

import stepping_django
from stepping_django.admin import VIEW_PERMISSION
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

pytestmark = pytest.mark.django_db


def cache_url(view: object) -> str:
    model = view.model  # type: ignore[attr-defined]
    return reverse(f"admin:stepping_django_{model._meta.model_name}_changelist")


STATES_URL = "/admin/stepping_django/viewstate/"


@pytest.fixture
def shop() -> None:
    tv = Product.objects.create(name="tv", price=3)
    basket = Basket.objects.create(customer="ann")
    LineItem.objects.create(basket=basket, product=tv, qty=2)
    Product.objects.create(name="bad", price=1)
    incremental.FAIL_ON.add("bad")
    try:
        stepping_django.apply_pending()
    finally:
        incremental.FAIL_ON.discard("bad")


def client_for(**kwargs: object) -> Client:
    user = User.objects.create_user("u", password="pw", **kwargs)  # type: ignore[arg-type]
    client = Client()
    client.force_login(user)
    return client


def test_a_superuser_sees_view_states_with_errors_and_each_cache(shop: None) -> None:
    client = client_for(is_staff=True, is_superuser=True)
    page = client.get(STATES_URL).content.decode()
    for column in ("state", "pending", "lag", "version", "short_error"):
        assert f'class="column-{column}"' in page
    assert "testapp.basket_totals" in page and "fresh" in page
    assert "ValueError: refusing product &#x27;bad&#x27;" in page
    detail = client.get(
        reverse("admin:stepping_django_viewstate_change", args=[quote("testapp.checked_prices")])
    ).content.decode()
    assert "Traceback (most recent call last)" in detail and "in _checked" in detail
    assert "stepping_testapp_checked_prices: " in detail  # rows per table
    assert 'name="_save"' not in detail  # read-only

    cache = client.get(cache_url(incremental.basket_totals)).content.decode()
    assert "Basket id" in cache and "Total" in cache and "Weight" in cache
    assert "By basket id" in cache and "By total" in cache  # typed columns as filters
    assert 'class="field-total">6<' in cache  # the basket's total, 3 * 2
    filtered = client.get(cache_url(incremental.basket_totals), {"total": "7"})
    assert 'class="field-total">6<' not in filtered.content.decode()


def test_the_pages_are_refused_without_permission(shop: None) -> None:
    anonymous = Client().get(STATES_URL)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    staff = client_for(is_staff=True)
    assert staff.get(STATES_URL).status_code == 403
    assert staff.get(cache_url(incremental.basket_totals)).status_code == 403
    assert "testapp.basket_totals" not in staff.get("/admin/").content.decode()
    user = User.objects.get(username="u")
    app, codename = VIEW_PERMISSION.split(".")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app, codename=codename)
    )
    assert staff.get(STATES_URL).status_code == 200
    assert staff.get(cache_url(incremental.basket_totals)).status_code == 200
    # Read-only: no adding, changing or deleting, even for a superuser.
    superuser = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(superuser)
    assert client.get(STATES_URL + "add/").status_code == 403
    assert client.post(STATES_URL + f"{quote('testapp.basket_totals')}/delete/").status_code == 403
