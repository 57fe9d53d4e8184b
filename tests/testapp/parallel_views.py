"""A parallel view (pipeline.py) for tests/django/test_parallel.py.

Not in incremental.py: the suite's default database is SQLite, where a parallel view is
refused (stepping_django.E011). The tests register it while they run; their Celery
workers import it (CELERY_IMPORTS, set when STEPPING_TEST_PARALLEL is).

Its group sum raises on a line item of quantity FAIL_QTY, after the join's tables are
committed: a batch that fails part-way.
"""

from __future__ import annotations

from stepping_django import engine as st
from stepping_django import incremental_view
from tests.testapp.models import LineItem, Product

FAIL_QTY = 13


class BasketSum(st.Data):
    basket_id: int
    total: int


def _line_value(p: st.Pair[st.Data, st.Data]) -> int:
    if p.right.qty == FAIL_QTY:
        raise ValueError(f"refusing line item {p.right.id} of quantity {FAIL_QTY}")
    return p.left.price * p.right.qty


@incremental_view(parallel=True)
def parallel_totals(
    products: st.ZSet[Product], line_items: st.ZSet[LineItem]
) -> st.ZSet[BasketSum]:
    joined = st.join(
        products,
        line_items,
        on_left=st.Index.pick(Product, lambda p: p.id),
        on_right=st.Index.pick(LineItem, lambda l: l.product_id),
    )
    totals = st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair, lambda p: p.right.basket_id),
        zero=int,
        pick_value=_line_value,
    )
    return st.map(totals, f=lambda p: BasketSum(basket_id=p.right, total=p.left))
