"""Daily totals per customer and meter: customers JOIN meters JOIN reads, GROUP BY
(customer, meter, date), SUM(value) -- the query of benchmarks/meter_reads.py."""

from __future__ import annotations

import datetime
import uuid

from benchmarks.meter_app.models import Customer, Meter, Read
from stepping_django import engine as st
from stepping_django import incremental_view


class DailyTotal(st.Data):
    customer_id: int
    meter_id: uuid.UUID
    date: datetime.date
    total: float


class DatedRead(st.Data):
    customer_id: int
    meter_id: uuid.UUID
    date: datetime.date
    value: float


def add_date(p: st.Pair[st.Pair[Customer, Meter], Read]) -> DatedRead:
    return DatedRead(
        customer_id=p.left.left.id,
        meter_id=p.right.meter_id,
        date=p.right.timestamp.date(),
        value=p.right.value,
    )


@incremental_view
def daily_totals(
    customers: st.ZSet[Customer], meters: st.ZSet[Meter], reads: st.ZSet[Read]
) -> st.ZSet[DailyTotal]:
    customer_meters = st.join(
        customers,
        meters,
        on_left=st.Index.pick(Customer, lambda c: c.id),
        on_right=st.Index.pick(Meter, lambda m: m.customer_id),
    )
    joined = st.join(
        customer_meters,
        reads,
        on_left=st.Index.pick(st.Pair, lambda p: p.right.meter_id),
        on_right=st.Index.pick(Read, lambda r: r.meter_id),
    )
    dated = st.map(joined, f=add_date)
    summed = st.group_reduce_flatten(
        dated,
        by=st.Index.pick(DatedRead, lambda r: (r.customer_id, r.meter_id, r.date)),
        zero=float,
        pick_value=lambda r: r.value,
    )
    return st.map(
        summed,
        f=lambda t: DailyTotal(
            customer_id=t.right[0], meter_id=t.right[1], date=t.right[2], total=t.left
        ),
    )
