"""triggers.py: on Postgres, statement triggers capture every write to the tables views
read, in the writer's statement, with no outbox INSERT from Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.db import connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from stepping_django import apply_pending, triggers
from stepping_django import engine as st
from stepping_django.declare import incremental_view
from stepping_django.models import Outbox
from tests.django.conftest import registered
from tests.django.test_capture import LINE_ITEM_VIEWS, PRODUCT_VIEWS, captured, keys
from tests.testapp.incremental import BasketTotal, basket_totals
from tests.testapp.models import Basket, LineItem, PlainNote, Product, Review

pytestmark = [pytest.mark.django_db, pytest.mark.parametrize("using", ["postgres"])]


class Price(st.Data):
    id: int
    price: int


def _prices(products: st.ZSet[Product]) -> st.ZSet[Price]:
    return st.map(products, f=lambda p: Price(id=p.id, price=p.price))


def installed(using: str) -> dict[str, set[str]]:
    """This app's triggers on `using`: table -> trigger names."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgname LIKE 'stepping\\_capture\\_%%'"
        )
        out: dict[str, set[str]] = {}
        for table, name in cursor.fetchall():
            out.setdefault(table, set()).add(name)
        return out


def functions(using: str) -> set[str]:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'stepping\\_capture\\_%%'")
        return {name for (name,) in cursor.fetchall()}


def outbox_inserts(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("INSERT INTO") and "stepping_django_outbox" in q["sql"]
    ]


EVENTS = {f"stepping_capture_{e}" for e in ("ins", "upd", "del", "trunc")}


def test_migrate_installs_four_triggers_on_each_table_views_read(using: str) -> None:
    tables = installed(using)
    for table in ("testapp_product", "testapp_lineitem"):
        assert tables[table] == EVENTS
    assert "testapp_plainnote" not in tables and "testapp_review" not in tables


def test_a_save_is_captured_by_the_trigger_with_no_insert_from_python(using: str) -> None:
    connection = connections[using]
    with CaptureQueriesContext(connection) as queries:
        p = Product.objects.using(using).create(name="tv", price=3)
        p.price = 4
        p.save()
    assert outbox_inserts(queries) == []
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk) * 2)


def test_raw_sql_is_captured_without_notify(using: str) -> None:
    p = Product.objects.using(using).create(name="tv", price=3)
    basket = Basket.objects.using(using).create(customer="ann")
    captured(using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO testapp_lineitem (basket_id, product_id, qty) VALUES (%s, %s, 2)"
            " RETURNING id",
            [basket.pk, p.pk],
        )
        (item_pk,) = cursor.fetchone()
        assert sorted(captured(using)) == sorted(keys(LINE_ITEM_VIEWS, "testapp.LineItem", item_pk))
        cursor.execute("UPDATE testapp_product SET price = 4 WHERE id = %s", [p.pk])
        assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
        cursor.execute("DELETE FROM testapp_lineitem WHERE id = %s", [item_pk])
        assert sorted(captured(using)) == sorted(keys(LINE_ITEM_VIEWS, "testapp.LineItem", item_pk))
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses pending FK checks
        cursor.execute("TRUNCATE testapp_lineitem")
        assert sorted(captured(using)) == sorted(keys(LINE_ITEM_VIEWS, "testapp.LineItem", None))


def test_an_update_that_changes_the_primary_key_captures_old_and_new(using: str) -> None:
    p = Product.objects.using(using).create(name="tv", price=3)
    captured(using)
    with connections[using].cursor() as cursor:
        cursor.execute("UPDATE testapp_product SET id = %s WHERE id = %s", [p.pk + 1000, p.pk])
    assert sorted(captured(using)) == sorted(
        keys(PRODUCT_VIEWS, "testapp.Product", p.pk, p.pk + 1000)
    )


def test_a_plain_managers_update_is_captured(using: str) -> None:
    a = Product.objects.using(using).create(name="a", price=1)
    Product.objects.using(using).create(name="b", price=2)
    captured(using)
    assert Product._base_manager.using(using).filter(name="a").update(price=7) == 1
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", a.pk))


def test_step_queryset_update_reads_no_keys_first(using: str) -> None:
    Product.objects.using(using).create(name="a", price=1)
    captured(using)
    with CaptureQueriesContext(connections[using]) as queries:
        Product.objects.using(using).update(price=2)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    assert len(captured(using)) == len(PRODUCT_VIEWS)


def test_set_null_on_delete_is_captured_without_a_query_per_row(using: str) -> None:
    from tests.testapp import review_views

    with registered(review_views.stars_by_product) as view:
        triggers.install(using)
        p = Product.objects.using(using).create(name="tv", price=3)
        review = Review.objects.using(using).create(product=p, stars=4)
        captured(using)
        with CaptureQueriesContext(connections[using]) as queries:
            p.delete()
        assert not any(
            q["sql"].startswith("SELECT") and "testapp_review" in q["sql"]
            for q in queries.captured_queries
        )
        assert (view.label, "testapp.Review", str(review.pk)) in set(captured(using))


def test_a_rolled_back_write_leaves_no_key(using: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=using):
        Product.objects.using(using).create(name="tv", price=3)
        raise RuntimeError("roll back")
    assert captured(using) == []


def test_a_process_whose_views_differ_inserts_its_keys_itself(using: str) -> None:
    """A view registered since migrate (or another version of the code): the triggers do
    not write its keys, so this process inserts them, for every view of the model."""
    view = incremental_view(_prices, name="trigger_prices")
    with registered(view):
        with CaptureQueriesContext(connections[using]) as queries:
            p = Product.objects.using(using).create(name="tv", price=3)
        assert len(outbox_inserts(queries)) == 1
        got = set(captured(using))
    assert got == set(keys([*PRODUCT_VIEWS, view.label], "testapp.Product", p.pk))


def test_install_follows_the_views_and_uninstall_drops_everything(using: str) -> None:
    before = functions(using)
    view = incremental_view(_prices, name="trigger_prices_2")
    with registered(view):
        triggers.install(using)
        after = functions(using)
        assert after != before and len(after) == len(before)  # product's four replaced
        with CaptureQueriesContext(connections[using]) as queries:
            p = Product.objects.using(using).create(name="tv", price=3)
        assert outbox_inserts(queries) == []
        assert set(captured(using)) == set(
            keys([*PRODUCT_VIEWS, view.label], "testapp.Product", p.pk)
        )
    triggers.install(using)
    assert functions(using) == before
    triggers.uninstall(using)
    assert installed(using) == {} and functions(using) == set()
    with CaptureQueriesContext(connections[using]) as queries:
        p = Product.objects.using(using).create(name="radio", price=3)
    assert len(outbox_inserts(queries)) == 1  # signals again
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    triggers.install(using)


def test_with_the_setting_off_install_drops_the_triggers(using: str) -> None:
    with override_settings(STEPPING={"DATABASE_TRIGGERS": False}):
        assert triggers.install(using) == []
        assert installed(using) == {}
        p = Product.objects.using(using).create(name="tv", price=3)
        assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", p.pk))
    assert {s.table for s in triggers.install(using)} >= {"testapp_product", "testapp_lineitem"}


def test_notify_inserts_even_where_triggers_capture(using: str) -> None:
    """notify is for writes the triggers may not have seen (session_replication_role)."""
    import stepping_django

    with connections[using].cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("INSERT INTO testapp_product (name, price) VALUES ('x', 1) RETURNING id")
        (pk,) = cursor.fetchone()
        cursor.execute("SET LOCAL session_replication_role = origin")
    assert captured(using) == []
    stepping_django.notify(Product, [pk], using=using)
    assert sorted(captured(using)) == sorted(keys(PRODUCT_VIEWS, "testapp.Product", pk))


@pytest.mark.django_db(transaction=True)
def test_views_applied_from_trigger_captures_equal_from_scratch(using: str) -> None:
    tv = Product.objects.using(using).create(name="tv", price=3)
    basket = Basket.objects.using(using).create(customer="ann")
    with connections[using].cursor() as cursor:
        for qty in (1, 2, 3):
            cursor.execute(
                "INSERT INTO testapp_lineitem (basket_id, product_id, qty) VALUES (%s, %s, %s)",
                [basket.pk, tv.pk, qty],
            )
        cursor.execute("UPDATE testapp_product SET price = 5")
    LineItem._base_manager.using(using).filter(qty=2).update(qty=20)
    PlainNote.objects.using(using).create(text="not read")
    apply_pending(using)
    assert not Outbox.objects.using(using).exists()
    assert basket_totals.maintained(using) == basket_totals.from_scratch(using)
    total = BasketTotal(basket_id=basket.pk, total=5 * (1 + 20 + 3))
    assert basket_totals.maintained(using) == st.ZSetPython({total: 1})


@pytest.fixture(autouse=True)
def _fresh_catalog_answers() -> Iterator[None]:
    """Tests here change the triggers inside their transaction: forget what was asked."""
    triggers.forget()
    yield
    triggers.forget()


def test_the_database_check_warns_about_missing_triggers(using: str) -> None:
    from stepping_django.checks import check_capture_triggers

    assert check_capture_triggers(databases=[using]) == []
    triggers.uninstall(using)
    warnings = check_capture_triggers(databases=[using])
    assert {w.id for w in warnings} == {"stepping_django.W004"}
    assert {w.obj for w in warnings} >= {"testapp.Product", "testapp.LineItem"}
    assert all(f"database {using!r}" in w.msg for w in warnings)
    triggers.install(using)
    assert check_capture_triggers(databases=[using]) == []


def _no_triggers_then_installed_by_another_process(using: str) -> Callable[[], int]:
    """This process learns that the triggers are missing, then another process's migrate
    installs them; returns a write that tells how many outbox INSERTs Python sent."""
    triggers.uninstall(using)
    Product.objects.using(using).create(name="tv", price=3)  # learns: no triggers
    captured(using)
    connection = connections[using]
    for spec in triggers.wanted(using):
        triggers._install_one(connection, spec)

    def inserts() -> int:
        with CaptureQueriesContext(connection) as queries:
            Product.objects.using(using).create(name="radio", price=3)
        assert len(captured(using)) >= len(PRODUCT_VIEWS)
        return len(outbox_inserts(queries))

    return inserts


def test_a_process_that_found_no_triggers_keeps_inserting_until_it_asks_again(
    using: str,
) -> None:
    inserts = _no_triggers_then_installed_by_another_process(using)
    assert triggers.RECHECK_SECS >= 60
    assert inserts() == 1  # within RECHECK_SECS: its own INSERT still
    assert inserts() == 1


def test_a_process_that_found_no_triggers_stops_inserting_once_it_asks_again(
    using: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code deployed before `migrate`: once another process installs the triggers and
    RECHECK_SECS has passed (0 here), this one no longer inserts its keys itself."""
    monkeypatch.setattr(triggers, "RECHECK_SECS", 0.0)
    inserts = _no_triggers_then_installed_by_another_process(using)
    assert inserts() == 0


def test_install_leaves_triggers_that_already_capture_the_views_alone(using: str) -> None:
    def oids() -> set[int]:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT oid FROM pg_trigger WHERE tgname LIKE 'stepping\\_capture\\_%%'")
            return {oid for (oid,) in cursor.fetchall()}

    before = oids()
    assert {s.table for s in triggers.install(using)} >= {"testapp_product", "testapp_lineitem"}
    assert oids() == before  # not dropped and created again
