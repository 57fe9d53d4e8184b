"""Rows: st.Data declarations, Pair and Empty.

Rows are immutable, hashable values, normalised to their declared field types, and a
declaration or value that a store could not hold is refused with the class and field named.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import enum
import gc
import pickle
import uuid
import weakref
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine import data
from stepping_django.engine.serialize import SerializationError, dumps, identity, loads
from tests.conftest import needs_speedups


class Product(st.Data):
    name: str
    price: float


class Priced(st.Data):
    amount: decimal.Decimal
    discount: float | None = None


class User(st.Data):
    user_id: int
    name: str


class Meter(st.Data):
    meter_id: int
    reading: float


class UserMeter(User, Meter):
    pass


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Everything(st.Data):
    s: str
    i: int
    f: float
    b: bool
    n: None
    d: datetime.date
    dt: datetime.datetime
    t: datetime.time
    td: datetime.timedelta
    u: uuid.UUID
    dec: decimal.Decimal
    e: Colour
    tup: tuple[int, ...]
    fs: frozenset[str]
    pair: st.Pair[int, str]
    row: Product
    opt: int | None
    anything: Any


def everything() -> Everything:
    return Everything(
        s="x",
        i=2**70,
        f=1.5,
        b=True,
        n=None,
        d=datetime.date(2024, 2, 29),
        dt=datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.UTC),
        t=datetime.time(23, 59, 1),
        td=datetime.timedelta(days=-1, seconds=5),
        u=uuid.UUID(int=7),
        dec=decimal.Decimal("1.10"),
        e=Colour.BLUE,
        tup=(1, 2),
        fs=frozenset({"a", "b"}),
        pair=st.Pair(1, "one"),
        row=Product(name="tv", price=3),
        opt=None,
        anything=("nested", frozenset({1})),
    )


def test_data_subclass_is_a_keyword_only_dataclass_with_its_fields_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Product)] == ["name", "price"]
    p = Product(name="tv", price=3.5)
    assert (p.name, p.price) == ("tv", 3.5)
    with pytest.raises(TypeError):
        Product("tv", 3.5)  # type: ignore[call-arg]


def test_defaults_apply_and_can_be_overridden() -> None:
    assert Priced(amount=decimal.Decimal(1)).discount is None
    assert Priced(amount=decimal.Decimal(1), discount=0.5).discount == 0.5


def test_rows_are_immutable() -> None:
    p = Product(name="tv", price=3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.price = 4.0  # type: ignore[misc]
    pair = st.Pair(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.left = 3
    assert (p.price, pair.left) == (3.0, 1)


def test_equal_rows_hash_equal_and_are_one_zset_key() -> None:
    a, b = Product(name="tv", price=3.0), Product(name="tv", price=3.0)
    assert a == b and hash(a) == hash(b) and a is not b
    assert st.ZSetPython([(a, 1), (b, 2)]).data == {a: 3}
    assert Product(name="tv", price=3.0) != Product(name="tv", price=4.0)


def test_rows_of_different_classes_with_the_same_values_differ() -> None:
    class A(st.Data):
        x: int

    class B(st.Data):
        x: int

    assert A(x=1) != B(x=1)  # type: ignore[comparison-overlap]
    assert identity(A(x=1)) != identity(B(x=1))
    assert st.ZSetPython([(A(x=1), 1), (B(x=1), 1)]).data == {A(x=1): 1, B(x=1): 1}


def test_rows_of_one_class_are_ordered_by_their_fields() -> None:
    rows = [Product(name="b", price=1.0), Product(name="a", price=2.0), Product(name="a", price=1)]
    assert sorted(rows) == [
        Product(name="a", price=1.0),
        Product(name="a", price=2.0),
        Product(name="b", price=1.0),
    ]


def test_fields_are_inherited_from_several_bases() -> None:
    names = {f.name for f in dataclasses.fields(UserMeter)}
    assert names == {"user_id", "name", "meter_id", "reading"}
    um = UserMeter(user_id=1, name="ann", meter_id=2, reading=3)
    assert (um.user_id, um.name, um.meter_id, um.reading) == (1, "ann", 2, 3.0)
    assert isinstance(um.reading, float)
    assert isinstance(um, User) and isinstance(um, Meter)
    assert um == UserMeter(user_id=1, name="ann", meter_id=2, reading=3.0)
    assert hash(um) == hash(UserMeter(user_id=1, name="ann", meter_id=2, reading=3.0))


def test_int_for_a_float_field_is_the_same_row_with_the_same_identity() -> None:
    three, three_f = Product(name="tv", price=3), Product(name="tv", price=3.0)
    assert three == three_f and hash(three) == hash(three_f)
    assert type(three.price) is float
    assert dumps(three) == dumps(three_f)
    assert identity(three) == identity(three_f)


def test_int_for_a_decimal_or_optional_float_field_is_normalised() -> None:
    row = Priced(amount=2, discount=1)  # type: ignore[arg-type]
    assert type(row.amount) is decimal.Decimal and type(row.discount) is float
    assert identity(row) == identity(Priced(amount=decimal.Decimal(2), discount=1.0))


def test_int_fields_are_not_turned_into_floats() -> None:
    assert type(User(user_id=1, name="a").user_id) is int


def test_every_supported_field_type_makes_a_hashable_row() -> None:
    row = everything()
    assert hash(row) == hash(everything())
    assert row == everything()
    assert row.row == Product(name="tv", price=3.0)


def test_pair_equality_hash_order_and_repr() -> None:
    assert st.Pair(1, "a") == st.Pair(1, "a")
    assert hash(st.Pair(1, "a")) == hash(st.Pair(1, "a"))
    assert st.Pair(1, "a") != st.Pair("a", 1)
    assert st.Pair(1, "a") < st.Pair(1, "b") < st.Pair(2, "a")
    assert repr(st.Pair(1, st.EMPTY)) == "Pair(left=1, right=EMPTY)"
    assert st.Pair(1, 2) != (1, 2)


def test_empty_is_one_value() -> None:
    assert st.Empty() is st.EMPTY
    assert st.Empty() == st.EMPTY
    assert hash(st.Empty()) == hash(st.EMPTY)
    assert st.Pair(1, st.Empty()) == st.Pair(1, st.EMPTY)
    assert st.EMPTY != None  # noqa: E711


@pytest.mark.parametrize(
    ("annotation", "shown"),
    [
        (list, "list"),
        (dict, "dict"),
        (set, "set"),
        (list[int], "list"),
        (dict[str, int], "dict"),
        (tuple[int, list[int]], "list"),
        (frozenset[set[int]], "set"),
        (int | list[int], "list"),
        (bytearray, "bytearray"),
    ],
)
def test_a_mutable_field_type_is_refused_at_declaration_naming_class_and_field(
    annotation: Any, shown: str
) -> None:
    with pytest.raises(st.UnsupportedType, match=rf"Bad\.items: .*{shown}"):
        type("Bad", (st.Data,), {"__annotations__": {"items": annotation}})


def test_a_custom_object_field_type_is_refused_at_declaration() -> None:
    class Custom:
        pass

    with pytest.raises(st.UnsupportedType, match=r"Holder\.thing: .*Custom"):
        type("Holder", (st.Data,), {"__annotations__": {"thing": Custom}})


class Loose(st.Data):
    name: str
    extra: Any


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, {1, 2}, bytearray(b"x")])
def test_a_mutable_value_is_refused_naming_class_and_field_when_the_row_enters_a_zset(
    bad: Any,
) -> None:
    with pytest.raises(st.UnsupportedType, match=r"Loose\.extra: unhashable"):
        st.ZSetPython({Loose(name="x", extra=bad): 1})
    with pytest.raises(st.UnsupportedType, match=r"Loose\.extra"):
        st.ZSetPython({st.Pair(1, Loose(name="x", extra=(1, bad))): 1})


def test_an_unknown_object_value_is_refused_naming_class_and_field() -> None:
    class Custom:
        pass

    with pytest.raises(SerializationError, match=r"Loose\.extra.*Custom"):
        dumps(Loose(name="x", extra=Custom()))


def test_a_bad_value_nested_in_a_tuple_names_the_field() -> None:
    with pytest.raises(SerializationError, match=r"Loose\.extra"):
        identity(Loose(name="x", extra=(1, object())))


def test_a_row_hashes_alike_however_it_was_made() -> None:
    """Built, decoded, unpickled or made field by field without __init__: one hash, so one
    Z-set key (the cached hash of the first three, computed once for the last)."""
    row = Product(name="tv", price=3.0)
    bare = Product.__new__(Product)
    object.__setattr__(bare, "name", "tv")
    object.__setattr__(bare, "price", 3.0)
    made = [row, loads(dumps(row)), pickle.loads(pickle.dumps(row)), bare]
    assert {hash(r) for r in made} == {hash(row)}
    assert st.ZSetPython([(r, 1) for r in made]) == st.ZSetPython({row: 4})


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_row_survives_every_pickle_protocol_and_copy(protocol: int) -> None:
    row = Inner(
        row=Priced(amount=decimal.Decimal("2.5")), at=(datetime.date(2023, 1, 2), uuid.UUID(int=3))
    )
    again = [pickle.loads(pickle.dumps(row, protocol)), copy.copy(row), copy.deepcopy(row)]
    assert again == [row] * 3 and {hash(r) for r in again} == {hash(row)}


class Inner(st.Data):
    row: Priced
    at: tuple[datetime.date, uuid.UUID]


class Held(st.Data):
    held: object
    n: int = 0


class Box:
    """Hashable by identity and mutable: what a row may hold that could point back to it."""

    row: Any = None


def test_rows_of_plain_values_are_left_out_of_the_cyclic_collector() -> None:
    needs_speedups()
    row = Priced(amount=decimal.Decimal("1.5"))
    nested = Inner(row=row, at=(datetime.date(2023, 1, 2), uuid.UUID(int=7)))
    assert not gc.is_tracked(row) and not gc.is_tracked(nested)
    assert not gc.is_tracked(st.Pair(nested, (1, "a")))
    assert not gc.is_tracked(loads(dumps(nested)))


def test_a_row_holding_a_mutable_object_stays_collected_when_it_closes_a_cycle() -> None:
    needs_speedups()
    box = Box()
    box.row = Held(held=box)
    pair = st.Pair(box.row, 1)
    assert gc.is_tracked(box.row) and gc.is_tracked(pair)
    assert not gc.is_tracked(st.Pair(1, 2))
    gone = weakref.ref(box)
    del box, pair
    gc.collect()
    assert gone() is None


sides = hs.one_of(
    hs.integers(-3, 3),
    hs.floats(allow_nan=True, width=16),
    hs.text(max_size=2),
    hs.tuples(hs.integers(0, 2), hs.integers(0, 2)),
    hs.just([1]),  # unhashable: the pair has no hash, hashing it raises
    hs.builds(Product, name=hs.text(max_size=1), price=hs.sampled_from([1.0, 2.0])),
)


def behaviour(make: Any, a: Any, b: Any, c: Any, d: Any) -> list[Any]:
    """What one Pair class answers: hash, equality, order, repr, tracking, immutability."""

    def attempt(f: Any) -> Any:
        try:
            return ("ok", f())
        except Exception as e:  # the same exception, with the same message
            return (type(e), str(e).replace("stepping_django.engine.data.Pair", "Pair"))

    p, q = make(a, b), make(c, d)
    return [
        attempt(lambda: hash(p)),
        attempt(lambda: p == q),
        attempt(lambda: p != q),
        attempt(lambda: p == (a, b)),
        attempt(lambda: p < q),
        attempt(lambda: p > q),
        attempt(lambda: p <= q),
        attempt(lambda: repr(p)),
        attempt(lambda: gc.is_tracked(p)),
        attempt(lambda: setattr(p, "left", 1)),
        (p.left, p.right),
    ]


@given(sides, sides, sides, sides)
def test_the_c_pair_behaves_as_the_python_one(a: Any, b: Any, c: Any, d: Any) -> None:
    needs_speedups()
    assert st.Pair is data.speedups.Pair
    c_pair, py_pair = behaviour(st.Pair, a, b, c, d), behaviour(data.PairPy, a, b, c, d)
    assert [x for x in c_pair if x[0] != "ok" or not isinstance(x[1], float)] == [
        x for x in py_pair if x[0] != "ok" or not isinstance(x[1], float)
    ]
    back = pickle.loads(pickle.dumps(st.Pair(a, b)))  # the Python class pickles as this one
    assert type(back) is st.Pair and repr(back) == repr(st.Pair(a, b))


def test_an_empty_c_pair_raises_instead_of_crashing() -> None:
    empty = st.Pair.__new__(st.Pair)
    for use in (repr, hash, lambda p: p == st.Pair(1, 2), lambda p: p.left, pickle.dumps):
        with pytest.raises(AttributeError):
            use(empty)
    assert st.Pair(left=1, right=2) == st.Pair(1, 2)
    with pytest.raises(TypeError):
        st.Pair(1)
