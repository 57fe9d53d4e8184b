"""management/commands/stepping.py over maintenance.py, on SQLite and Postgres."""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings

import stepping_django
from stepping_django import maintenance
from stepping_django.models import Outbox
from tests.conftest import service_missing
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

LAZY = {"EAGER": False, "BATCH_SIZE": 2}  # writes only capture; apply runs in batches of 2


def run(*args: str, error: str = "", using: str = "default") -> str:
    out = StringIO()
    argv = [*args, "--database", using]
    if error:
        with pytest.raises(CommandError, match=error) as e:
            call_command("stepping", *argv, stdout=out)
        assert e.value.returncode == 1
    else:
        call_command("stepping", *argv, stdout=out)
    return out.getvalue()


def by_view(using: str) -> dict[str, dict[str, object]]:
    return {s["view"]: s for s in json.loads(run("status", "--json", using=using))}


def test_status_apply_and_lag(using: str) -> None:
    with override_settings(STEPPING=LAZY):
        tv = Product.objects.using(using).create(name="tv", price=3)
        basket = Basket.objects.using(using).create(customer="ann")
        for qty in (1, 2, 3):
            LineItem.objects.using(using).create(basket=basket, product=tv, qty=qty)
    status = by_view(using)["testapp.basket_totals"]
    assert status["state"] == "applying" and status["pending"] == 4
    assert status["lag_seconds"] is not None and status["error"] == ""
    # Pending for longer than the threshold: lagging.
    Outbox.objects.using(using).update(created_at="2000-01-01T00:00:00Z")
    lagging = by_view(using)["testapp.basket_totals"]
    assert lagging["state"] == "lagging" and lagging["lag_seconds"] > 3600  # type: ignore[operator]
    table = run("status", "testapp.basket_totals", using=using)
    assert "testapp.basket_totals" in table and "lagging" in table
    assert "testapp.checked_prices" not in table

    progress: list[tuple[int, int]] = []
    with override_settings(STEPPING=LAZY):
        result = maintenance.drain(
            "testapp.basket_totals", using, lambda d, t: progress.append((d, t))
        )
    assert result.status == "fresh" and result.keys == 4 and result.batches >= 2
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    out = run("apply", using=using)
    assert "testapp.checked_prices: fresh, 1 keys, 1 iterations" in out
    fresh = by_view(using)
    assert {s["state"] for s in fresh.values()} == {"fresh"}
    totals = fresh["testapp.basket_totals"]
    tables = totals["tables"]
    assert isinstance(tables, dict)
    assert tables["stepping_testapp_basket_totals"] == 1  # one basket
    assert len(tables) == 4 and all(isinstance(n, int) for n in tables.values())
    assert totals["version"] == totals["declared_version"] == incremental.basket_totals.version


def test_a_failed_view_shows_its_error_and_traceback(using: str) -> None:
    incremental.FAIL_ON.add("bad")
    try:
        Product.objects.using(using).create(name="bad", price=3)
        run(
            "apply",
            "testapp.checked_prices",
            error="views failed: testapp.checked_prices",
            using=using,
        )
        status = by_view(using)["testapp.checked_prices"]
        assert status["state"] == "failed" and status["pending"] == 1
        assert status["error"] == "ValueError: refusing product 'bad'"
        assert "in _checked" in str(status["traceback"])
        text = run("status", using=using)
        assert "testapp.checked_prices failed at" in text
        assert "ValueError: refusing product 'bad'" in text and "Traceback" in text
    finally:
        incremental.FAIL_ON.discard("bad")
    assert "testapp.checked_prices: fresh, 1 keys" in run("apply", using=using)
    assert by_view(using)["testapp.checked_prices"]["state"] == "fresh"


def test_rebuild_gives_the_same_view_in_new_tables(using: str) -> None:
    tv = Product.objects.using(using).create(name="tv", price=3)
    basket = Basket.objects.using(using).create(customer="ann")
    for qty in range(1, 8):
        LineItem.objects.using(using).create(basket=basket, product=tv, qty=qty)
    view = incremental.basket_totals
    stepping_django.apply_pending(using)
    maintenance.prune([view], using)  # tables a transactional test's flush left behind
    before = list(view.objects.using(using).values_list("basket_id", "total"))
    assert before == [(basket.pk, 84)]
    old = set(maintenance.status(using, [view])[0].tables)
    progress: list[tuple[int, int]] = []
    with override_settings(STEPPING=LAZY):
        result = maintenance.rebuild(view, using, progress=lambda d, t: progress.append((d, t)))
    assert result.build.status == "built" and result.build.rows == 8  # 1 product, 7 items
    assert progress[0] == (0, 8) and progress[-1] == (8, 8) and len(progress) == 6
    new = set(maintenance.status(using, [view])[0].tables)
    assert new != old and "stepping_testapp_basket_totals" in new & old
    assert list(view.objects.using(using).values_list("basket_id", "total")) == before
    assert maintenance.verify(view, using).ok
    out = run("rebuild", "testapp.basket_totals", "--no-progress", using=using)
    assert "testapp.basket_totals: rebuilt from 8 source rows" in out
    run("rebuild", "testapp.nope", error="no incremental view is declared as 'testapp.nope'")
    # The tables of the two earlier builds are old now; prune drops them and only them.
    dry = run("prune", "testapp.basket_totals", "--dry-run", using=using)
    assert "would drop 8 tables" in dry
    assert "dropped 8 tables" in run("prune", "testapp.basket_totals", using=using)
    existing = set(connections[using].introspection.table_names())
    live = set(maintenance.status(using, [view])[0].tables)
    assert live <= existing
    ours = {
        t for t in existing if t.startswith((view.table_prefix, "sdo_" + view.table_prefix[4:]))
    }
    assert ours == live - {"stepping_testapp_basket_totals"}
    assert "nothing to prune" in run("prune", "testapp.basket_totals", using=using)
    assert maintenance.verify(view, using).ok


def test_verify_reports_a_corrupted_row(using: str) -> None:
    tv = Product.objects.using(using).create(name="tv", price=3)
    radio = Product.objects.using(using).create(name="radio", price=5)
    stepping_django.apply_pending(using)
    assert "testapp.checked_prices: ok" in run("verify", using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "UPDATE stepping_testapp_checked_prices SET price = 4 WHERE product_id = %s", [tv.pk]
        )
    out = run("verify", "testapp.checked_prices", error="checked_prices differ", using=using)
    assert out.startswith("testapp.checked_prices: DIFFERS\n")
    assert f"extra (x1): CheckedPrice(product_id={tv.pk}, price=4)" in out
    assert f"missing (x1): CheckedPrice(product_id={tv.pk}, price=3)" in out
    assert f"CheckedPrice(product_id={radio.pk}" not in out
    assert "!= stored data" in out  # the typed column disagrees with the row's data
    # A weight gone wrong (the row counted twice) is a difference too.
    with connections[using].cursor() as cursor:
        cursor.execute(
            "UPDATE stepping_testapp_checked_prices SET weight = 2 WHERE product_id = %s",
            [radio.pk],
        )
    v = maintenance.verify("testapp.checked_prices", using)
    assert (incremental.CheckedPrice(product_id=radio.pk, price=5), 1) in v.extra
    # Rebuilding repairs it.
    maintenance.rebuild("testapp.checked_prices", using)
    assert "testapp.checked_prices: ok" in run("verify", using=using)


def test_graph_text_dot_and_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = run("graph", "testapp.basket_totals")
    assert text.startswith("graph basket_totals  version ")
    assert "join on id = product_id" in text and "table sdv_" in text
    dot = run("graph", "testapp.basket_totals", "--format", "dot")
    assert dot.startswith('digraph "basket_totals" {') and "->" in dot
    run("graph", "testapp.basket_totals", "--format", "png", error="needs --output FILE")
    if shutil.which("dot") is None:
        service_missing("Graphviz's dot", "apt-get install graphviz")
    svg = tmp_path / "g.svg"
    assert f"wrote {svg}" in run(
        "graph", "testapp.basket_totals", "--format", "svg", "--output", str(svg)
    )
    assert "<svg" in svg.read_text()
    png = tmp_path / "g.png"
    run("graph", "testapp.basket_totals", "--format", "png", "--output", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on the PATH
    run(
        "graph", "testapp.basket_totals", "--format", "png", "--output", str(png),
        error="Graphviz's `dot` program is not installed",
    )  # fmt: skip
