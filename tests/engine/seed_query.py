"""The query of the seed page (products JOIN line items, totals per basket, a cache)."""

from __future__ import annotations

from stepping_django import engine as st


class Product(st.Data):
    name: str
    price: float


class LineItem(st.Data):
    basket_id: int
    product_name: str
    qty: int


class ReceiptItem(st.Data):
    basket_id: int
    total: float

    def __str__(self) -> str:
        return f"Basket id: {self.basket_id} total: ${self.total}"


def pick_price(p: st.Pair[Product, LineItem]) -> float:
    return p.left.price * p.right.qty


def to_receipt_item(p: st.Pair[float, int]) -> ReceiptItem:
    return ReceiptItem(basket_id=p.right, total=p.left)


cache = st.Cache[ReceiptItem]()


def query(
    products: st.ZSet[Product],
    line_items: st.ZSet[LineItem],
) -> st.ZSet[st.Pair[Product, LineItem]]:
    joined = st.join(
        products,
        line_items,
        on_left=st.Index.pick(Product, lambda p: p.name),
        on_right=st.Index.pick(LineItem, lambda l: l.product_name),
    )
    grouped = st.group_reduce_flatten(
        joined,
        by=st.Index.pick(st.Pair[Product, LineItem], lambda p: p.right.basket_id),
        zero=float,
        pick_value=pick_price,
    )
    receipt_items = st.map(grouped, f=to_receipt_item)
    _ = cache[receipt_items](lambda z: st.integrate(z))
    return joined


graph = st.compile(query)
