"""management/commands/stepping.py and maintenance.py."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from stepping_django.maintenance import status
from tests.testapp import incremental
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db


def run(*args: str, error: str = "") -> str:
    out = StringIO()
    if error:
        with pytest.raises(CommandError, match=error):
            call_command("stepping", *args, stdout=out)
    else:
        call_command("stepping", *args, stdout=out)
    return out.getvalue()


def test_status_apply_verify() -> None:
    Product.objects.create(name="tv", price=3)
    assert "testapp.checked_prices: fresh, t=0, 1 pending, 0 rows" in run("status")
    out = run("verify", "testapp.checked_prices", error="differ from a from-scratch")
    assert "testapp.checked_prices: DIFFERS\n    missing (x1): CheckedPrice(product_id=" in out
    out = run("apply")
    assert "testapp.checked_prices: fresh, 1 keys, 1 iterations" in out
    assert run("verify").count(": ok") == 4
    assert [s.pending for s in status()] == [0, 0, 0, 0]


def test_rebuild_and_failures_are_reported() -> None:
    Product.objects.create(name="bad", price=3)
    incremental.FAIL_ON.add("bad")
    try:
        run("rebuild", "testapp.checked_prices", error="some views failed")
        assert "error: ValueError: refusing product 'bad'" in run("status")
    finally:
        incremental.FAIL_ON.discard("bad")
    assert "rebuilt" in run("rebuild", "testapp.checked_prices")
    run("apply", "x.y", error="no incremental view is declared as 'x.y'")
