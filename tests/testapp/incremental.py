"""Views of the test app: a join with a group sum, a plain group sum, a top-n, and a view
whose function raises for products named in FAIL_ON (to test failure and recovery)."""

from __future__ import annotations

from stepping_django import engine as st
from stepping_django import incremental_view
from tests.testapp.models import LineItem, Product

#: Product names that make `checked_prices` raise; tests add and remove names.
FAIL_ON: set[str] = set()


class BasketTotal(st.Data):
    basket_id: int
    total: int


class ProductQty(st.Data):
    product_id: int
    qty: int


class CheckedPrice(st.Data):
    product_id: int
    price: int


def _line_value(p: st.Pair[st.Data, st.Data]) -> int:
    return p.left.price * p.right.qty


@incremental_view
def basket_totals(
    products: st.ZSet[Product], line_items: st.ZSet[LineItem]
) -> st.ZSet[BasketTotal]:
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
    return st.map(totals, f=lambda p: BasketTotal(basket_id=p.right, total=p.left))


# The model named by its label, a string (not a Python name: hence the noqa).
@incremental_view
def product_quantities(
    line_items: st.ZSet["testapp.LineItem"],  # noqa: F821, UP037
) -> st.ZSet[ProductQty]:
    sums = st.group_reduce_flatten(
        line_items,
        by=st.Index.pick(LineItem, lambda l: l.product_id),
        zero=int,
        pick_value=lambda l: l.qty,
    )
    return st.map(sums, f=lambda p: ProductQty(product_id=p.right, qty=p.left))


@incremental_view
def top_quantities(line_items: st.ZSet[LineItem]) -> st.ZSet[ProductQty]:
    sums = st.group_reduce_flatten(
        line_items,
        by=st.Index.pick(LineItem, lambda l: l.product_id),
        zero=int,
        pick_value=lambda l: l.qty,
    )
    rows = st.map(sums, f=lambda p: ProductQty(product_id=p.right, qty=p.left))
    return st.first_n(rows, index=st.Index.pick(ProductQty, lambda r: r.qty, ascending=False), n=3)


def _checked(p: st.Data) -> CheckedPrice:
    if p.name in FAIL_ON:
        raise ValueError(f"refusing product {p.name!r}")
    return CheckedPrice(product_id=p.id, price=p.price)


@incremental_view
def checked_prices(products: st.ZSet[Product]) -> st.ZSet[CheckedPrice]:
    return st.map(products, f=_checked)
