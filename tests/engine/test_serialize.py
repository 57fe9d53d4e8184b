"""Serialization: positional, deterministic msgpack and a stable identity.

A round trip gives an equal value of the same types; equal rows give equal bytes (so one
row is one table row in a SQL store); the bytes and identity are the same in every process.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.serialize import SerializationError, dumps, identity, loads
from tests.engine.test_data import Colour, Product, everything

REPO = Path(__file__).resolve().parents[2]


class Box(st.Data):
    value: Any


class Two(st.Data):
    a: Any
    b: Any


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


timezones = hs.sampled_from(
    [None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))]
)

atoms: hs.SearchStrategy[Any] = hs.one_of(
    hs.text(max_size=5),
    hs.integers(-(2**70), 2**70),
    hs.floats(allow_nan=False),
    hs.booleans(),
    hs.none(),
    hs.binary(max_size=4),
    hs.dates(),
    hs.datetimes(timezones=timezones),
    hs.times(),
    hs.timedeltas(),
    hs.uuids(),
    hs.decimals(allow_nan=False, allow_infinity=False, places=3),
    hs.sampled_from(Colour),
    hs.sampled_from(Size),
)


def containers(children: hs.SearchStrategy[Any]) -> hs.SearchStrategy[Any]:
    return hs.one_of(
        hs.lists(children, max_size=3).map(tuple),
        hs.frozensets(children, max_size=3),
        hs.builds(Box, value=children),
        hs.builds(Two, a=children, b=children),
        hs.builds(st.Pair, children, children),
        hs.just(st.EMPTY),
    )


values: hs.SearchStrategy[Any] = hs.recursive(atoms, containers, max_leaves=6)


def same_types(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1, 1.0 and True are all ==)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b))
    if isinstance(a, st.Data):
        return all(same_types(x, y) for x, y in zip(a.st_values(), b.st_values()))
    if isinstance(a, st.Pair):
        return same_types(a.left, b.left) and same_types(a.right, b.right)
    if isinstance(a, frozenset):
        return a == b and {dumps(x) for x in a} == {dumps(y) for y in b}
    if isinstance(a, datetime.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@given(value=values)
def test_a_round_trip_gives_an_equal_value_of_the_same_types(value: Any) -> None:
    back = loads(dumps(value))
    assert back == value
    assert same_types(back, value)
    assert dumps(back) == dumps(value)
    assert hash(back) == hash(value)


@given(value=values)
def test_a_row_round_trips_inside_a_data_row_and_a_pair(value: Any) -> None:
    row = st.Pair(Box(value=value), Two(a=value, b=(value,)))
    back = loads(dumps(row))
    assert back == row and same_types(back, row)
    assert identity(back) == identity(row)


@given(members=hs.lists(atoms, max_size=5, unique=True))
def test_a_frozenset_encodes_the_same_whatever_its_insertion_order(members: list[Any]) -> None:
    forward, backward = frozenset(members), frozenset(reversed(members))
    assert dumps(Box(value=forward)) == dumps(Box(value=backward))


def test_every_supported_field_type_round_trips() -> None:
    row = everything()
    back = loads(dumps(row))
    assert back == row and same_types(back, row)
    assert identity(back) == identity(row)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**64) - 1, 2**200, 2**63 - 1, -(2**63)],
)
def test_big_ints_round_trip_exactly(value: int) -> None:
    back = loads(dumps(Box(value=value)))
    assert back.value == value and type(back.value) is int


def test_identity_is_short_bytes_or_a_16_byte_digest() -> None:
    assert identity(1) == dumps(1)
    long_row = Box(value="x" * 100)
    assert len(identity(long_row)) == 16
    assert identity(long_row) != identity(Box(value="x" * 101))


def test_a_decoded_row_is_equal_hashes_equal_and_has_the_same_identity() -> None:
    row = Product(name="tv", price=3)
    back = loads(dumps(row))
    assert back == row and hash(back) == hash(row) and type(back) is Product
    assert st.ZSetPython([(row, 1), (back, 1)]).data == {row: 2}


def test_a_value_that_cannot_be_stored_is_refused_naming_its_type() -> None:
    class Custom:
        def __hash__(self) -> int:
            return 1

    with pytest.raises(SerializationError, match="Custom"):
        dumps(Custom())
    with pytest.raises(SerializationError, match=r"Box\.value.*Custom"):
        dumps(Box(value=Custom()))


def test_subclasses_of_atoms_are_refused() -> None:
    class MyStr(str):
        pass

    with pytest.raises(SerializationError, match="MyStr"):
        dumps(Box(value=MyStr("x")))


IDENTITY_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from stepping_django.engine.serialize import identity, dumps
from tests.engine.test_data import everything, Product
from tests.engine.test_serialize import Box
rows = [everything(), Product(name="tv", price=3), Box(value=frozenset({{"a", "b", "c"}}))]
print(json.dumps([[dumps(r).hex(), identity(r).hex(), hash(r)] for r in rows]))
"""


def test_bytes_and_identity_are_the_same_in_every_process() -> None:
    def run(seed: str) -> list[list[Any]]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", IDENTITY_SCRIPT.format(repo=str(REPO))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        out: list[list[Any]] = json.loads(done.stdout)
        return out

    first, second = run("1"), run("2")
    assert [r[:2] for r in first] == [r[:2] for r in second]
    here = [everything(), Product(name="tv", price=3), Box(value=frozenset({"a", "b", "c"}))]
    assert [r[:2] for r in first] == [[dumps(r).hex(), identity(r).hex()] for r in here]


def test_equal_decimals_of_different_scale_are_one_row() -> None:
    a, b = Box(value=decimal.Decimal("1.0")), Box(value=decimal.Decimal("1.00"))
    assert a == b and hash(a) == hash(b)
    assert identity(a) == identity(b)


def test_uuid_and_date_types_are_kept_apart_from_their_text() -> None:
    u = uuid.UUID(int=5)
    assert loads(dumps(u)) == u and loads(dumps(str(u))) == str(u)
    assert dumps(u) != dumps(str(u))
    d = datetime.date(2020, 1, 2)
    assert loads(dumps(d)) == d and type(loads(dumps(d))) is datetime.date
    dt = datetime.datetime(2020, 1, 2)
    assert type(loads(dumps(dt))) is datetime.datetime


@given(
    value=hs.decimals(min_value=-(10**9), max_value=10**9, places=2),
    extra_zeros=hs.integers(0, 4),
)
def test_a_decimal_has_one_encoding_whatever_its_trailing_zeros(
    value: decimal.Decimal, extra_zeros: int
) -> None:
    padded = value.quantize(decimal.Decimal(1).scaleb(-2 - extra_zeros))
    assert padded == value
    assert dumps(Box(value=padded)) == dumps(Box(value=value))
    assert loads(dumps(padded)) == value


def test_minus_zero_is_zero_in_every_position() -> None:
    for zero, minus in [
        (0.0, -0.0),
        (Box(value=0.0), Box(value=-0.0)),
        ((1, 0.0), (1, -0.0)),
        (st.Pair(0.0, 0.0), st.Pair(-0.0, -0.0)),
        (frozenset({0.0}), frozenset({-0.0})),
        (Two(a=(0.0,), b=st.Pair(1, 0.0)), Two(a=(-0.0,), b=st.Pair(1, -0.0))),
    ]:
        assert zero == minus
        assert dumps(zero) == dumps(minus)
        assert identity(zero) == identity(minus)
