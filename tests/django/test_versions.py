"""View versions: a changed definition is noticed (system check, status), backfilled from
the source tables at `apply` / `migrate`, read only once complete, and its old tables go
with `prune`; on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections

import stepping_django
from stepping_django import engine as st
from stepping_django import maintenance
from stepping_django.checks import check_unbuilt_versions
from stepping_django.declare import IncrementalView
from stepping_django.registry import registry
from tests.testapp import incremental
from tests.testapp.incremental import ProductQty
from tests.testapp.models import Basket, LineItem, Product


def product_quantities(line_items: st.ZSet[LineItem]) -> st.ZSet[ProductQty]:
    """Version 2 of testapp.product_quantities: quantities in tenths."""
    sums = st.group_reduce_flatten(
        line_items,
        by=st.Index.pick(LineItem, lambda l: l.product_id),
        zero=int,
        pick_value=lambda l: l.qty * 10,
    )
    return st.map(sums, f=lambda p: ProductQty(product_id=p.right, qty=p.left))


def version_2() -> IncrementalView:
    return IncrementalView(product_quantities, name="product_quantities", app_label="testapp")


def shop(using: str, qtys: list[int]) -> tuple[Basket, list[Product]]:
    basket = Basket.objects.using(using).create(customer="ann")
    products = [
        Product.objects.using(using).create(name=f"p{i}", price=1) for i in range(len(qtys))
    ]
    for p, q in zip(products, qtys):
        LineItem.objects.using(using).create(basket=basket, product=p, qty=q)
    stepping_django.apply_pending(using)
    return basket, products


@contextmanager
def deployed(view: IncrementalView) -> Iterator[IncrementalView]:
    """`view` declared in place of the view of its label, as after a deploy."""
    old = registry._views[view.label]
    registry._views[view.label] = view
    try:
        yield view
    finally:
        registry._views[view.label] = old


def qtys(view: IncrementalView, using: str) -> list[int]:
    return sorted(view.objects.using(using).values_list("qty", flat=True))


def tables(using: str) -> set[str]:
    return set(connections[using].introspection.table_names())


@pytest.mark.parametrize("how", ["apply", "migrate"])
def test_a_new_definition_is_backfilled_switched_and_pruned(using: str, how: str) -> None:
    v1 = incremental.product_quantities
    basket, products = shop(using, [3, 5])
    v1_tables = set(maintenance.status(using, [v1])[0].tables)
    v2 = version_2()
    assert v2.version != v1.version
    with deployed(v2):
        (warning,) = check_unbuilt_versions(databases=[using])
        assert warning.id == "stepping_django.W003" and warning.obj == "testapp.product_quantities"
        assert f"built at version {v1.version}" in warning.msg
        assert f"now version {v2.version}, not built yet" in warning.msg
        status = maintenance.status(using, [v2])[0]
        assert status.state == "lagging" and status.version == v1.version
        assert qtys(v2, using) == [3, 5]  # reads serve the old version
        LineItem.objects.using(using).create(basket=basket, product=products[0], qty=1)

        if how == "apply":
            out = StringIO()
            call_command("stepping", "apply", "--database", using, stdout=out)
            # The backfill read the pending row already: applying its key changes nothing.
            line = "testapp.product_quantities: fresh, 1 keys, 0 iterations, built its new"
            assert line in out.getvalue()
        else:
            call_command("migrate", database=using, verbosity=0)
        assert qtys(v2, using) == [40, 50]
        assert maintenance.verify(v2, using).ok
        assert check_unbuilt_versions(databases=[using]) == []
        status = maintenance.status(using, [v2])[0]
        assert status.state == "fresh" and status.version == v2.version
        assert status.tables["stepping_testapp_product_quantities"] == 2
        # The old version's tables stay until pruned.
        old = v1_tables - {"stepping_testapp_product_quantities"}
        assert len(old) == 1 and old <= tables(using)
        (pruned,) = maintenance.prune([v2], using)
        assert set(pruned.tables) == old | {"sdo_" + v1.table_prefix[4:] + "first"}
        assert pruned.snapshots == ["testapp.product_quantities"]
        assert not set(pruned.tables) & tables(using)
        assert set(status.tables) <= tables(using)
        assert maintenance.verify(v2, using).ok
        LineItem.objects.using(using).filter(qty=5).update(qty=6)
        stepping_django.apply_pending(using)
        assert qtys(v2, using) == [40, 60]
        assert maintenance.verify(v2, using).ok


def test_reads_switch_only_once_the_backfill_is_complete(using: str) -> None:
    from django.test import override_settings

    shop(using, list(range(1, 8)))
    v2 = version_2()
    seen: list[list[int]] = []
    with deployed(v2), override_settings(STEPPING={"EAGER": False, "BATCH_SIZE": 2}):
        result = maintenance.rebuild(
            v2, using, progress=lambda done, total: seen.append(qtys(v2, using))
        )
    assert result.build.rows == 7 and len(seen) == 5  # before the first page, then 4 pages
    assert all(s == list(range(1, 8)) for s in seen)  # version 1 throughout the backfill
    assert qtys(v2, using) == [10 * i for i in range(1, 8)]
