"""One busy view: the total per customer (a group sum, then a map), applied in parallel
(pipeline.py) unless BENCH_PARALLEL=0 (the one-worker-at-a-time applier, for reference).
The flag does not change the view's version: both modes use the same tables."""

from __future__ import annotations

import os

from benchmarks.orders_app.models import Order
from stepping_django import engine as st
from stepping_django import incremental_view

PARALLEL = os.environ.get("BENCH_PARALLEL", "1") == "1"


class CustomerTotal(st.Data):
    customer: int
    total: int


@incremental_view(parallel=PARALLEL)
def customer_totals(orders: st.ZSet[Order]) -> st.ZSet[CustomerTotal]:
    sums = st.group_reduce_flatten(
        orders,
        by=st.Index.pick(Order, lambda o: o.customer),
        zero=int,
        pick_value=lambda o: o.amount,
    )
    return st.map(sums, f=lambda p: CustomerTotal(customer=p.right, total=p.left))
