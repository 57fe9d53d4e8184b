"""The admin pages in a real browser: headless Chromium (the Debian package, driven by
Playwright) against pytest-django's live server. Without Chromium or Playwright the test
fails in CI and is skipped elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from stepping_django.registry import registry
from tests.conftest import service_missing
from tests.testapp.models import Basket, LineItem, Product

CHROMIUM = "/usr/bin/chromium"
HOW = "apt-get install -y chromium chromium-driver && pip install -r requirements.txt"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        service_missing("Playwright", HOW, e)
    if not os.path.exists(CHROMIUM):
        service_missing("Chromium", HOW, FileNotFoundError(CHROMIUM))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shop(transactional_db: None) -> None:
    """A basket and a superuser; the views are applied as the writes commit (EAGER)."""
    tv = Product.objects.create(name="tv", price=3)
    basket = Basket.objects.create(customer="ann")
    LineItem.objects.create(basket=basket, product=tv, qty=4)
    User.objects.create_superuser("admin", password="secret-pw")


def test_the_admin_pages_render_for_a_superuser_and_not_for_anonymous(
    shop: None, live_server: Any, browser: Any
) -> None:
    model = registry.get("testapp.basket_totals").model
    cache = f"{live_server.url}/admin/stepping_django/{model._meta.model_name}/"
    states = f"{live_server.url}/admin/stepping_django/viewstate/"

    anonymous = browser.new_page()
    anonymous.goto(cache)
    assert "/admin/login/?next=" in anonymous.url
    assert anonymous.locator("#id_username").count() == 1

    page = browser.new_context().new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/stepping_django/viewstate/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(states)
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(registry.views())
    row = rows.filter(has_text="testapp.basket_totals")
    assert row.locator("td.field-state").inner_text() == "fresh"
    assert row.locator("td.field-pending").inner_text() == "0"

    page.goto(cache)
    headers = page.locator("#result_list thead th").all_inner_texts()
    assert [h.strip().lower() for h in headers] == ["basket id", "total", "weight"]
    assert page.locator("td.field-total").all_inner_texts() == ["12"]
    assert page.locator("#changelist-filter").inner_text().count("By ") == 2
