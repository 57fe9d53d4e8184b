"""Row classes get a generated __init__ that behaves like the dataclass one."""

from __future__ import annotations

import dataclasses
import pickle
from typing import ClassVar

import pytest

from stepping_django import engine as st


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
