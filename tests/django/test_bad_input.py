"""Bad input through the Django layer: each is reported naming the view, model or field,
the failing view is marked failed with its pending changes kept, other views stay fresh,
and once the cause is gone the view catches up to a from-scratch computation.

(A query raising on some rows at run time: test_apply.py's
test_failing_view_keeps_its_changes_and_recovers; declaration errors one by one:
test_checks.py. Here: the ones a production deployment meets after deploying.)
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

import stepping_django
from stepping_django import engine as st
from stepping_django import maintenance
from stepping_django.apply import RowTooLarge
from stepping_django.declare import IncrementalView
from stepping_django.models import Outbox, ViewState
from tests.django.conftest import assert_views_fresh
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product, Settings


def _shop(using: str) -> None:
    tv = Product.objects.using(using).create(name="tv", price=3)
    radio = Product.objects.using(using).create(name="radio", price=5)
    basket = Basket.objects.using(using).create(customer="a")
    LineItem.objects.using(using).create(basket=basket, product=tv, qty=2)
    LineItem.objects.using(using).create(basket=basket, product=radio, qty=1)
    stepping_django.apply_pending(using)


def _pending(using: str, label: str) -> int:
    return Outbox.objects.using(using).filter(view=label).count()


def _others_fresh(using: str, failed: str, results: dict[str, Any]) -> None:
    for label, result in results.items():
        if label != failed:
            assert result.status == "fresh", (label, result)
            assert _pending(using, label) == 0


class Echo(st.Data):
    id: int


def test_an_unsupported_field_type_names_view_parameter_model_and_field() -> None:
    def reads_json(settings: st.ZSet[Settings]) -> st.ZSet[Echo]:
        return st.map(settings, f=lambda s: Echo(id=s.id))

    view = IncrementalView(reads_json, app_label="testapp")
    (problem,) = view.problems
    assert problem.id == "stepping_django.E003"
    for word in ("testapp.reads_json", "'settings'", "testapp.Settings.options", "JSONField"):
        assert word in problem.message
    assert view.graph is None
    result = stepping_django.apply.apply_view(view)  # never run, never raises
    assert result.status == "failed" and "JSONField" in result.error


@pytest.mark.parametrize(
    "body, words",
    [
        (lambda p: 1 / 0, ("ZeroDivisionError",)),
        (lambda p: st.map(p, f=lambda r: r).nope, ("AttributeError", "nope")),
        (lambda p: st.first_n(p, index=st.Index.pick(Product, lambda r: r.id), n=-2),
         ("first_n", "-2")),
        (lambda p: st.join(p, p, on_left=st.Index.pick(Product, lambda r: r.id),
                           on_right=st.Index.pick(Product, lambda r: (r.id, r.name))),
         ("join", "key parts")),
        (lambda p: None, ("output 0", "NoneType")),
    ],
    ids=["raises", "attribute", "first_n", "join arity", "returns None"],
)  # fmt: skip
def test_a_view_that_fails_to_compile_is_reported_naming_it(body: Any, words: tuple[str]) -> None:
    def broken(products: st.ZSet[Product]) -> st.ZSet[Echo]:
        return body(products)  # type: ignore[no-any-return]

    view = IncrementalView(broken, app_label="testapp")
    (problem,) = view.problems
    assert problem.id == "stepping_django.E005"
    assert "view testapp.broken cannot be compiled" in problem.message
    for word in words:
        assert word in problem.message, problem.message


def test_a_row_larger_than_max_row_bytes_fails_only_its_views_naming_view_model_and_pk(
    using: str,
) -> None:
    _shop(using)
    big = Product.objects.using(using).create(name="x" * 50, price=1)
    with override_settings(STEPPING={"EAGER": True, "MAX_ROW_BYTES": 50}):
        results = stepping_django.apply_pending(using)
    # Both views that read Product refuse it; the views over LineItem are fresh.
    for label in ("testapp.checked_prices", "testapp.basket_totals"):
        assert results[label].status == "failed"
        error = ViewState.objects.using(using).get(view=label).error
        assert f"RowTooLarge: view {label}: row testapp.Product pk={big.pk}" in error
        assert "MAX_ROW_BYTES" in error
        assert _pending(using, label) == 1  # kept
    for label in ("testapp.product_quantities", "testapp.top_quantities"):
        assert results[label].status == "fresh"
    # A rebuild (backfill from the source table) refuses it too, and keeps the live view.
    with override_settings(STEPPING={"EAGER": True, "MAX_ROW_BYTES": 50}):
        with pytest.raises(RowTooLarge, match=f"row testapp.Product pk={big.pk} "):
            maintenance.rebuild(incremental.checked_prices, using, force=True)
    # Under the limit again: the views catch up; nothing was lost.
    Product.objects.using(using).filter(pk=big.pk).update(name="small")
    stepping_django.apply_pending(using)
    assert_views_fresh(using)
    assert incremental.checked_prices.objects.using(using).filter(product_id=big.pk).exists()


def test_a_state_table_left_behind_times_out_naming_it_and_a_rebuild_repairs_it(
    using: str,
) -> None:
    """A state table whose last_update.t is behind the view's time (a restore of an older
    backup, a hand edit): the iteration waits MAX_SLEEP_SECS for its frontier, then the
    view fails naming the table; `stepping rebuild` recomputes it."""
    _shop(using)
    view = incremental.basket_totals
    assert view.graph is not None
    table = view.graph.states[0].name
    with connections[using].cursor() as cursor:
        cursor.execute("UPDATE last_update SET t = 0 WHERE table_name = %s", [table])
    Product.objects.using(using).filter(name="tv").update(price=10)
    with override_settings(STEPPING={"EAGER": True, "MAX_SLEEP_SECS": 0.05}):
        results = stepping_django.apply_pending(using)
    assert results[view.label].status == "failed"
    error = ViewState.objects.using(using).get(view=view.label).error
    assert error.startswith("FrontierTimeout") and repr(table) in error
    assert "MAX_SLEEP_SECS" in error
    assert _pending(using, view.label) == 1
    _others_fresh(
        using, view.label, {k: v for k, v in results.items() if k != "testapp.checked_prices"}
    )
    maintenance.rebuild(view, using)
    stepping_django.apply_pending(using)
    assert_views_fresh(using)


def test_a_missing_state_table_fails_the_view_naming_it_and_a_rebuild_repairs_it(
    using: str,
) -> None:
    """The view's tables are gone (a restore without them): applying attaches with
    create_tables=False, fails naming the table, keeps the pending changes."""
    _shop(using)
    view = incremental.product_quantities
    assert view.graph is not None
    table = view.graph.states[-1].name
    with connections[using].cursor() as cursor:
        cursor.execute(f"DROP TABLE {connections[using].ops.quote_name(table)}")
    LineItem.objects.using(using).update(qty=7)
    results = stepping_django.apply_pending(using)
    assert results[view.label].status == "failed"
    error = ViewState.objects.using(using).get(view=view.label).error
    assert "MissingTable" in error and table in error
    assert _pending(using, view.label) == 2  # both line items' keys kept
    _others_fresh(using, view.label, results)
    maintenance.rebuild(view, using)
    stepping_django.apply_pending(using)
    assert_views_fresh(using)


@pytest.mark.usefixtures("signal_capture")  # one pending key: notify's, not a trigger's too
def test_a_column_dropped_by_a_migration_fails_the_views_naming_the_field(using: str) -> None:
    """The database lost a column a view reads (a migration removed the field, the code
    still declares it): the views reading the model fail naming the column, their changes
    are kept, and the views over other models go on."""
    _shop(using)
    qn = connections[using].ops.quote_name
    with connections[using].cursor() as cursor:
        cursor.execute(f"ALTER TABLE {qn(Product._meta.db_table)} DROP COLUMN {qn('price')}")
    # A raw write (notify): the model can no longer save through the ORM.
    with connections[using].cursor() as cursor:
        cursor.execute(f"UPDATE {qn(Product._meta.db_table)} SET name = 'tv2' WHERE name = 'tv'")
    stepping_django.notify(Product, None, using=using)
    results = stepping_django.apply_pending(using)
    for label in ("testapp.checked_prices", "testapp.basket_totals"):
        assert results[label].status == "failed"
        assert "price" in ViewState.objects.using(using).get(view=label).error
        assert _pending(using, label) == 1
    for label in ("testapp.product_quantities", "testapp.top_quantities"):
        assert results[label].status == "fresh"


@pytest.mark.broker
@pytest.mark.django_db
def test_a_database_error_that_persists_is_retried_a_bounded_number_of_times() -> None:
    """SQLite reports a dropped column as an OperationalError, the class of a lost
    connection: the task sends itself again with a growing delay, DATABASE_RETRIES times,
    then leaves the view failed (its changes kept) for the next write or sweep."""
    import redis
    from django.conf import settings

    import tests.celeryapp  # noqa: F401  (the Celery app tasks are sent with)
    from stepping_django import tasks
    from tests.django.faults import new_queue, require_broker

    require_broker()
    using = "default"
    _shop(using)
    with connections[using].cursor() as cursor:
        cursor.execute('ALTER TABLE "testapp_product" DROP COLUMN "price"')
    stepping_django.notify(Product, None, using=using)
    queue = new_queue()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    label = "testapp.checked_prices"
    try:
        with override_settings(STEPPING={"EAGER": False, "QUEUE": queue}):
            tasks.apply_views_task([label], using)
            assert client.llen(queue) == 1  # sent again, attempt 1
            tasks.apply_views_task([label], using, attempt=tasks.DATABASE_RETRIES - 1)
            assert client.llen(queue) == 2  # the last attempt
            tasks.apply_views_task([label], using, attempt=tasks.DATABASE_RETRIES)
            assert client.llen(queue) == 2  # no more
    finally:
        client.delete(queue)
    state = ViewState.objects.using(using).get(view=label)
    assert state.status == ViewState.FAILED and "price" in state.error
    assert _pending(using, label) == 1
