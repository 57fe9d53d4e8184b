"""The shop's incremental views, each a query over the models, maintained on every write.

- basket_totals: SELECT basket_id, SUM(price * qty) ... GROUP BY basket_id
- product_day_revenue: revenue per product per day (line items JOIN products JOIN baskets)
- top_products: the 10 products with the most revenue (ORDER BY revenue DESC LIMIT 10)
"""

from __future__ import annotations

import datetime

from demo_project.shop.models import Basket, LineItem, Product
from stepping_django import engine as st
from stepping_django import incremental_view


class BasketTotal(st.Data):
    basket_id: int
    total: float


class ProductDayRevenue(st.Data):
    product: str
    day: datetime.date
    revenue: float


class ProductRevenue(st.Data):
    product: str
    revenue: float


def sold(products: st.ZSet[Product], line_items: st.ZSet[LineItem]) -> st.ZSet[st.Pair]:
    """Line items with their product: Pair(product, line_item)."""
    return st.join(
        products,
        line_items,
        on_left=st.Index.pick(Product, lambda p: p.id),
        on_right=st.Index.pick(LineItem, lambda l: l.product_id),
    )


def line_value(p: st.Pair) -> float:
    return p.left.price * p.right.qty


@incremental_view
def basket_totals(
    products: st.ZSet[Product], line_items: st.ZSet[LineItem]
) -> st.ZSet[BasketTotal]:
    totals = st.group_reduce_flatten(
        sold(products, line_items),
        by=st.Index.pick(st.Pair, lambda p: p.right.basket_id),
        zero=float,
        pick_value=line_value,
    )
    return st.map(totals, f=lambda t: BasketTotal(basket_id=t.right, total=t.left))


@incremental_view
def product_day_revenue(
    products: st.ZSet[Product], line_items: st.ZSet[LineItem], baskets: st.ZSet[Basket]
) -> st.ZSet[ProductDayRevenue]:
    with_day = st.join(
        sold(products, line_items),
        baskets,
        on_left=st.Index.pick(st.Pair, lambda p: p.right.basket_id),
        on_right=st.Index.pick(Basket, lambda b: b.id),
    )
    revenue = st.group_reduce_flatten(
        with_day,
        by=st.Index.pick(st.Pair, lambda p: (p.left.left.name, p.right.day)),
        zero=float,
        pick_value=lambda p: line_value(p.left),
    )
    return st.map(
        revenue,
        f=lambda r: ProductDayRevenue(product=r.right[0], day=r.right[1], revenue=r.left),
    )


@incremental_view
def top_products(
    products: st.ZSet[Product], line_items: st.ZSet[LineItem]
) -> st.ZSet[ProductRevenue]:
    revenue = st.group_reduce_flatten(
        sold(products, line_items),
        by=st.Index.pick(st.Pair, lambda p: p.left.name),
        zero=float,
        pick_value=line_value,
    )
    rows = st.map(revenue, f=lambda r: ProductRevenue(product=r.right, revenue=r.left))
    return st.first_n(
        rows, index=st.Index.pick(ProductRevenue, lambda r: r.revenue, ascending=False), n=10
    )
