"""The seed page's example on the memory store: receipts, and changes on remove/replace."""

from __future__ import annotations

from stepping_django import engine as st
from tests.engine.seed_query import LineItem, Product, ReceiptItem, cache, graph


def load(store: st.StorePython) -> tuple[st.Action, st.Action]:
    product_action, line_item_action = st.actions(store, graph)
    product_action.insert(Product(name="tv", price=3), Product(name="radio", price=5))
    line_item_action.insert(
        LineItem(basket_id=1, product_name="radio", qty=4),
        LineItem(basket_id=1, product_name="tv", qty=1),
        LineItem(basket_id=2, product_name="tv", qty=2),
    )
    return product_action, line_item_action


def test_seed_query_gives_the_two_receipts() -> None:
    store = st.StorePython.from_graph(graph)
    load(store)
    shown = [str(row) for row, count in cache.zset(store).iter() if count == 1]
    assert sorted(shown) == ["Basket id: 1 total: $23.0", "Basket id: 2 total: $6.0"]
    assert "Basket id: 1 total: $23.0" in repr(cache.zset(store))


def test_removing_a_line_item_retracts_its_join_rows_and_updates_the_receipt() -> None:
    store = st.StorePython.from_graph(graph)
    _, line_items = load(store)
    (joined,) = line_items.remove(LineItem(basket_id=1, product_name="radio", qty=4))
    assert joined == st.ZSetPython(
        {
            st.Pair(
                Product(name="radio", price=5.0),
                LineItem(basket_id=1, product_name="radio", qty=4),
            ): -1
        }
    )
    assert cache.zset(store) == st.ZSetPython(
        {ReceiptItem(basket_id=1, total=3.0): 1, ReceiptItem(basket_id=2, total=6.0): 1}
    )


def test_replacing_a_product_price_changes_both_baskets() -> None:
    store = st.StorePython.from_graph(graph)
    products, _ = load(store)
    (joined,) = products.replace(Product(name="tv", price=3), Product(name="tv", price=4))
    assert sum(c for _, c in joined.iter()) == 0 and len(joined) == 4
    assert cache.zset(store) == st.ZSetPython(
        {ReceiptItem(basket_id=1, total=24.0): 1, ReceiptItem(basket_id=2, total=8.0): 1}
    )


def test_emptied_basket_disappears_like_sql_group_by() -> None:
    store = st.StorePython.from_graph(graph)
    _, line_items = load(store)
    line_items.remove(LineItem(basket_id=2, product_name="tv", qty=2))
    assert cache.zset(store) == st.ZSetPython({ReceiptItem(basket_id=1, total=23.0): 1})


def test_int_and_float_prices_are_one_row() -> None:
    assert Product(name="tv", price=3) == Product(name="tv", price=3.0)
    from stepping_django.engine.serialize import identity

    assert identity(Product(name="tv", price=3)) == identity(Product(name="tv", price=3.0))
