"""Indexes: Index.pick records attribute paths, names, key types and order."""

from __future__ import annotations

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import Item, Tag
from tests.engine.seed_query import LineItem, Product


def test_pick_of_one_field_reads_it_and_knows_its_name_and_type() -> None:
    ix = st.Index.pick(Item, lambda i: i.key)
    assert ix.f(Item(key=3, value=1)) == 3
    assert ix.names == ("key",) and ix.key_types == (int,) and ix.ascending == (True,)
    assert not ix.is_composite
    assert ix.name == "key"


def test_pick_through_a_pair_follows_the_declared_types() -> None:
    ix = st.Index.pick(st.Pair[Product, LineItem], lambda p: p.right.basket_id)
    row = st.Pair(Product(name="tv", price=1.0), LineItem(basket_id=7, product_name="tv", qty=1))
    assert ix.f(row) == 7
    assert ix.names == ("right.basket_id",) and ix.key_types == (int,)
    assert ix.name == "right_basket_id"


def test_pick_of_a_tuple_is_a_composite_key_with_one_flag_per_part() -> None:
    ix = st.Index.pick(Item, lambda i: (i.value, i.key), ascending=(False, True))
    assert ix.f(Item(key=1, value=2)) == (2, 1)
    assert ix.is_composite and ix.names == ("value", "key") and ix.ascending == (False, True)
    assert ix.parts((2, 1)) == (2, 1)
    assert st.Index.pick(Item, lambda i: (i.key, i.value), ascending=False).ascending == (
        False,
        False,
    )


def test_pick_of_tuple_items_reads_them() -> None:
    ix = st.Index.pick(tuple[int, str], lambda t: t[1])
    assert ix.f((1, "a")) == "a"
    assert ix.key_types == (str,)


def test_pick_of_an_optional_field_keeps_its_type() -> None:
    ix = st.Index.pick(Tag, lambda t: t.key)
    assert ix.f(Tag(key=None, label="a")) is None
    assert ix.key_types == (int | None,)


def test_pick_refuses_key_functions_that_compute() -> None:
    with pytest.raises(TypeError):
        st.Index.pick(Item, lambda i: i.key + 1)
    with pytest.raises(TypeError, match="only read attributes"):
        st.Index.pick(Item, lambda i: 3)


def test_pick_refuses_a_wrong_number_of_ascending_flags() -> None:
    with pytest.raises(ValueError, match="2 key parts but 3"):
        st.Index.pick(Item, lambda i: (i.key, i.value), ascending=(True, True, False))


def test_indexes_are_equal_by_fields_and_order_not_by_function_object() -> None:
    a = st.Index.pick(Item, lambda i: i.key)
    b = st.Index.pick(Item, lambda row: row.key)
    assert a == b and hash(a) == hash(b)
    assert a != st.Index.pick(Item, lambda i: i.key, ascending=False)
    assert a != st.Index.pick(Item, lambda i: i.value)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != st.Index.pick(Item, lambda i: i.value).fingerprint()


def test_atom_composite_and_identity_constructors() -> None:
    atom = st.Index.atom("key", Item, int, lambda i: i.key)
    assert atom.f(Item(key=4, value=0)) == 4 and atom.names == ("key",)
    comp = st.Index.composite(("key", "value"), Item, tuple[int, int], lambda i: (i.key, i.value))
    assert comp.is_composite and comp.key_types == (int, int) and comp.ascending == (True, True)
    ident = st.Index.identity(int)
    assert ident.f(5) == 5


def test_sort_key_orders_none_first_ascending_and_inverts_descending_parts() -> None:
    up = st.Index.pick(Tag, lambda t: t.key)
    down = st.Index.pick(Tag, lambda t: t.key, ascending=False)
    keys = [2, None, 0]
    assert sorted(keys, key=up.sort_key) == [None, 0, 2]
    assert sorted(keys, key=down.sort_key) == [2, 0, None]
    mixed = st.Index.pick(Item, lambda i: (i.key, i.value), ascending=(False, True))
    pairs = [(0, 1), (1, 0), (0, 0), (1, 1)]
    assert sorted(pairs, key=mixed.sort_key) == [(1, 0), (1, 1), (0, 0), (0, 1)]
