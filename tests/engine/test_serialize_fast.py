"""The hand-written msgpack encoder gives exactly the reference encoder's bytes."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.serialize import _enc, _pack, dumps, identity, loads


class Colour(enum.Enum):
    RED = 1


class Reading(st.Data):
    meter_id: uuid.UUID
    at: datetime.datetime
    day: datetime.date
    value: float
    note: str | None
    tags: tuple[str, ...]


class Single(st.Data):
    x: int


class Holder(st.Data):
    inner: Single
    pair: Any
    colour: Colour
    amount: decimal.Decimal
    members: frozenset[int]


INT_EDGES = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 10**30,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63), -(2**63) - 1,
]  # fmt: skip

VALUES: list[Any] = [
    *INT_EDGES,
    0.0, -0.0, 1.5, float("inf"), float("-inf"),
    "", "a" * 31, "a" * 32, "é" * 200, "x" * 255, "x" * 256, "x" * 65535, "x" * 65536,
    b"", b"\x00" * 255, b"\x00" * 256, b"\x01" * 65536,
    None, True, False,
    (), (1, "a", (2.5, None)), tuple(range(20)), tuple(range(70000)),
    uuid.UUID(int=12345),
    datetime.date(2023, 1, 31), datetime.date(1, 1, 1),
    datetime.datetime(2023, 1, 5, 3, 30), datetime.datetime(2023, 1, 5, 3, 30, tzinfo=datetime.UTC),
    st.Pair(1, "x"), st.Pair(st.Pair(1, 2), (3, 4)), st.EMPTY, st.Pair(Single(x=1), st.EMPTY),
    Single(x=5), Single(x=-(2**70)),
    Reading(
        meter_id=uuid.UUID(int=7), at=datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC),
        day=datetime.date(2023, 1, 1), value=2, note=None, tags=("a", "b"),
    ),
    Holder(
        inner=Single(x=1), pair=st.Pair(Single(x=2), "y"), colour=Colour.RED,
        amount=decimal.Decimal("1.50"), members=frozenset({3, 1, 2}),
    ),
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_fast_encoder_gives_the_reference_bytes(value: Any) -> None:
    assert _enc(value) == _pack(value)
    assert loads(dumps(value)) == value


atoms = hs.one_of(
    hs.integers(),
    hs.floats(allow_nan=False),
    hs.text(),
    hs.binary(),
    hs.none(),
    hs.booleans(),
    hs.uuids(),
    hs.dates(),
    hs.datetimes(),
)
values = hs.recursive(
    atoms,
    lambda inner: hs.one_of(
        hs.lists(inner, max_size=5).map(tuple),
        hs.tuples(inner, inner).map(lambda p: st.Pair(*p)),
    ),
    max_leaves=12,
)


@given(values)
def test_fast_encoder_matches_the_reference_on_any_value(value: Any) -> None:
    assert _enc(value) == _pack(value)


def test_a_row_caches_its_bytes_and_a_decoded_row_has_the_same_identity() -> None:
    row = Single(x=3)
    assert dumps(row) is dumps(row)
    back = loads(dumps(row))
    assert back == row and identity(back) == identity(row) and hash(back) == hash(row)


def test_an_unsupported_value_is_named_by_its_field() -> None:
    class Loose(st.Data):
        v: Any

    with pytest.raises(st.SerializationError, match=r"Loose\.v"):
        dumps(Loose(v=object()))


def test_a_subclass_row_is_written_with_its_own_fields_after_a_base_row() -> None:
    class Base(st.Data):
        x: int

    class Child(Base):
        y: int

    assert _enc(Base(x=1)) == _pack(Base(x=1))
    assert _enc(Child(x=1, y=2)) == _pack(Child(x=1, y=2))
    assert loads(dumps(Child(x=1, y=2))) == Child(x=1, y=2)
