"""Row classes get a generated __init__ that behaves like the dataclass one."""

from __future__ import annotations

import dataclasses
import decimal
import gc
import inspect
import pickle
import sys
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.data import speedups
from tests.conftest import needs_speedups


class Priced(st.Data):
    name: str
    price: float = 1
    currency: ClassVar[str] = "EUR"


class Normalised(st.Data):
    name: str

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "name", self.name.lower())


class WithInitVar(st.Data):
    x: int
    scale: dataclasses.InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        super().__post_init__()
        object.__setattr__(self, "x", self.x * scale)


class WithFactory(st.Data):
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


def test_defaults_and_int_to_float_are_applied() -> None:
    assert Priced(name="a").price == 1.0 and type(Priced(name="a").price) is float
    assert Priced(name="a", price=3) == Priced(name="a", price=3.0)
    assert hash(Priced(name="a", price=3)) == hash(Priced(name="a", price=3.0))


def test_keyword_only_and_unknown_keywords_are_refused() -> None:
    with pytest.raises(TypeError):
        Priced("a")  # type: ignore[misc]
    with pytest.raises(TypeError):
        Priced(name="a", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Priced()  # type: ignore[call-arg]


def test_own_post_init_runs_and_the_hash_follows_its_result() -> None:
    a, b = Normalised(name="TV"), Normalised(name="tv")
    assert a == b and hash(a) == hash(b) and len({a: 1, b: 1}) == 1


def test_init_vars_and_default_factories_keep_the_dataclass_init() -> None:
    assert WithInitVar(x=2, scale=3).x == 6
    assert WithInitVar(x=2) == WithInitVar(x=2, scale=1)
    assert WithFactory().tags == () and hash(WithFactory()) == hash(WithFactory(tags=()))


def test_rows_are_frozen_and_pickle_without_their_cached_hash() -> None:
    row = Priced(name="a", price=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.name = "b"  # type: ignore[misc]
    hash(row)
    state = row.__getstate__()
    assert state == {"name": "a", "price": 2.0}
    back = pickle.loads(pickle.dumps(row))
    assert back == row and hash(back) == hash(row)


class Mixed(st.Data):
    name: str
    price: float = 1
    amount: decimal.Decimal = decimal.Decimal(0)
    tags: tuple[str, ...] = ()
    note: str | None = None


def made_by_python(cls: type[st.Data], *args: Any, **kwargs: Any) -> Any:
    """A row built by the generated Python __init__ the C one stands in for."""
    row = cls.__new__(cls)
    getattr(cls.__init__, "__wrapped__", cls.__init__)(row, *args, **kwargs)
    return row


def outcome(build: Any) -> tuple[str, Any]:
    try:
        row = build()
    except TypeError as e:
        return "error", str(e)
    try:
        h: Any = hash(row)
    except st.UnsupportedType as e:
        h = str(e)
    return "row", (vars(row), h, gc.is_tracked(row))


def test_plain_row_classes_get_the_c_init_and_the_others_keep_python() -> None:
    needs_speedups()
    assert type(Mixed.__init__) is speedups.RowInit
    assert type(Priced.__init__) is speedups.RowInit
    assert type(Normalised.__init__) is not speedups.RowInit
    assert str(inspect.signature(Mixed)).startswith("(*, name, price=1,")
    assert outcome(Mixed.__init__) == outcome(Mixed.__init__.__wrapped__)  # no self


texts = hs.text(max_size=5)
field_values = hs.one_of(
    hs.integers(-(2**70), 2**70),
    hs.floats(allow_nan=False),
    hs.decimals(allow_nan=False),
    texts,
    hs.none(),
    hs.tuples(texts, texts),
    hs.just([1]),  # unhashable: no hash is cached and the row is left to the collector
)
keywords = hs.dictionaries(
    hs.sampled_from(["name", "price", "amount", "tags", "note", "colour"]), field_values
)


@given(keywords, hs.lists(field_values, max_size=2))
def test_the_c_init_builds_the_rows_and_raises_the_errors_of_the_python_one(
    kwargs: dict[str, Any], args: list[Any]
) -> None:
    """Same attributes in the same order, same cached hash, same collector tracking, and
    for bad calls the same TypeError message, whatever the keywords and values."""
    c = outcome(lambda: Mixed(*args, **kwargs))
    py = outcome(lambda: made_by_python(Mixed, *args, **kwargs))
    if c[0] == "row":
        assert list(c[1][0]) == list(py[1][0])
    assert c == py


def test_a_row_with_an_unhashable_field_raises_when_hashed_as_in_python() -> None:
    for row in (Mixed(name="a", tags=[1]), made_by_python(Mixed, name="a", tags=[1])):  # type: ignore[arg-type]
        with pytest.raises(st.UnsupportedType, match="Mixed.tags"):
            hash(row)


def test_the_c_init_keeps_no_reference_it_should_not() -> None:
    name, price = "a" * 40, 10**30
    before = sys.getrefcount(name), sys.getrefcount(price)
    rows = [Mixed(name=name, price=price, note=name) for _ in range(1000)]
    assert sys.getrefcount(name) == before[0] + 2000
    del rows
    assert (sys.getrefcount(name), sys.getrefcount(price)) == before
