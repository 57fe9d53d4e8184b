"""The C encoder (_speedups.c) gives the Python encoder's bytes and identities.

Identities are stored in databases, so the two must never differ: the C path is checked
against the reference `_pack` on every case of test_serialize_fast, on edge cases of its own
and on generated values, and the pure Python path (STEPPING_PURE_PYTHON=1, in a subprocess)
against the C one. `make test` builds the module, so CI fails when it is missing.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine import serialize
from stepping_django.engine.operators.group_reduce import row_hashes_py
from stepping_django.engine.serialize import (
    SerializationError,
    _enc,
    _enc_py,
    _identity_of_bytes_py,
    _pack,
    identity,
)
from tests.conftest import needs_speedups
from tests.engine import test_serialize, test_serialize_fast

REPO = Path(__file__).resolve().parents[2]
D = datetime.datetime
TZ = datetime.timezone
ONE_HOUR = datetime.timedelta(hours=1)


class Meters(datetime.tzinfo):
    """A tzinfo of its own kind: isoformat() asks it for the offset."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return -ONE_HOUR - datetime.timedelta(seconds=7)


class Floating(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> None:
        return None


class NoFields(st.Data):
    pass


class DatedRead(st.Data):
    user_id: int
    meter_id: uuid.UUID
    date: datetime.date
    timestamp: datetime.datetime
    value: float


class Loose(st.Data):
    v: Any


class Outer(st.Data):
    inner: Any
    n: int


def dated_read(user_id: int = 5) -> DatedRead:
    return DatedRead(
        user_id=user_id,
        meter_id=uuid.UUID(int=99),
        date=datetime.date(2023, 1, 5),
        timestamp=D(2023, 1, 5, 3, 30, tzinfo=datetime.UTC),
        value=12.5,
    )


EDGES: list[Any] = [
    2**63 - 1, 2**63, -(2**63) + 1, -(2**64), 2**200, -(2**200),
    float("nan"), 5e-324, -1.5, 1e308,
    "é", "日本語", "😀", "a\x00b", "é" * 15, "é" * 16, "é" * 128, "😀" * 16384,
    uuid.UUID(int=0), uuid.UUID(int=2**128 - 1),
    datetime.date.min, datetime.date.max, datetime.date(2000, 2, 29), datetime.date(1900, 3, 1),
    *(datetime.date.fromordinal(n) for n in (127, 128, 255, 256, 65535, 65536)),
    D(1, 1, 1), D.max, D(2023, 1, 5, 3, 30, 0, 1), D(999, 12, 31, 23, 59, 59, 999999),
    D(2023, 1, 5, tzinfo=TZ(datetime.timedelta(hours=5, minutes=30))),
    D(2023, 1, 5, tzinfo=TZ(datetime.timedelta(hours=-5, minutes=-30), "EST-ish")),
    D(2023, 1, 5, tzinfo=TZ(datetime.timedelta(seconds=-1))),
    D(2023, 1, 5, tzinfo=TZ(datetime.timedelta(microseconds=1))),
    D(2023, 1, 5, tzinfo=TZ(datetime.timedelta(hours=-23, minutes=-59, microseconds=-7))),
    D(2023, 1, 5, 1, 2, 3, 4, tzinfo=TZ.min), D(2023, 1, 5, tzinfo=TZ.max),
    D(2023, 1, 5, 6, tzinfo=Meters()), D(2023, 1, 5, 6, tzinfo=Floating()),
    (True, False, None, (), ((),)), st.Pair((1, 2), st.Pair(None, "x")),
    # Pair bodies of 4, 8 and 16 bytes (fixext), and across the ext8/ext16/ext32 limits
    st.Pair(1, 200), st.Pair(1, "abcde"), st.Pair("a" * 6, "b" * 7),
    *(st.Pair(1, "x" * n) for n in (251, 252, 65530, 65531)),
    NoFields(), dated_read(), Outer(inner=dated_read(), n=1), st.Pair(dated_read(), NoFields()),
    Outer(inner=Loose(v=(1, st.EMPTY, frozenset({"a"}))), n=-1),
]  # fmt: skip

CASES: list[Any] = [*test_serialize_fast.VALUES, *EDGES]


def reference_identity(value: Any) -> bytes:
    return _identity_of_bytes_py(_pack(value))


def test_the_c_encoder_is_in_use() -> None:
    needs_speedups()
    assert _enc is serialize._speedups.enc and serialize._enc is _enc
    assert serialize.identity is serialize._speedups.identity
    assert serialize.identity_of_bytes is serialize._speedups.identity_of_bytes


@pytest.mark.parametrize("value", CASES, ids=lambda v: type(v).__name__)
def test_the_encoders_give_the_reference_bytes_and_identity(value: Any) -> None:
    expected = _pack(value)
    assert _enc(value) == expected
    assert _enc_py(value) == expected
    assert identity(value) == reference_identity(value)


timezones = hs.one_of(
    hs.none(),
    hs.integers(-86_399_999_999, 86_399_999_999).map(
        lambda us: TZ(datetime.timedelta(microseconds=us))
    ),
    hs.just(Meters()),
)


@hs.composite
def atoms(draw: hs.DrawFn) -> Any:
    """A composite, so that its repr is short: hypothesis renders the repr of the strategy
    below, which repeats this one in every container."""
    return draw(
        hs.one_of(
            test_serialize.atoms,
            test_serialize_fast.atoms,
            hs.datetimes(timezones=timezones),
            hs.text(min_size=28, max_size=36),  # across the fixstr limit, in UTF-8 bytes
            hs.lists(hs.integers(), min_size=14, max_size=18).map(tuple),  # across fixarray's
        )
    )


values = hs.recursive(
    atoms(),
    lambda inner: hs.one_of(
        test_serialize.containers(inner),
        hs.builds(Outer, inner=inner, n=hs.integers()),
    ),
    max_leaves=12,
)


@given(values)
def test_the_c_encoder_matches_the_reference_on_any_value(value: Any) -> None:
    expected = _pack(value)  # first: it never caches, the others cache on rows
    assert _enc(value) == expected
    assert identity(value) == _identity_of_bytes_py(expected)


@pytest.mark.parametrize("n", [0, 16, 17, 127, 128, 129, 255, 256, 257, 100_000])
def test_identity_of_bytes_is_the_16_byte_blake2b_across_block_sizes(n: int) -> None:
    b = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    assert serialize.identity_of_bytes(b) == _identity_of_bytes_py(b)


@given(hs.binary(max_size=600))
def test_identity_of_bytes_is_the_16_byte_blake2b_of_any_bytes(b: bytes) -> None:
    assert serialize.identity_of_bytes(b) == _identity_of_bytes_py(b)


@pytest.mark.parametrize(
    "value",
    [
        Loose(v=object()),
        Outer(inner=Loose(v=object()), n=1),
        (1, Outer(inner=2.5, n=st.Pair(1, set()))),
        st.Pair(1, Loose(v=(1, 2, set()))),
    ],
    ids=["field", "nested row", "row in a tuple", "row in a pair"],
)
def test_a_field_that_cannot_be_stored_is_named_as_in_python(value: Any) -> None:
    with pytest.raises(SerializationError) as reference:
        _pack(value)
    with pytest.raises(SerializationError) as c:
        _enc(value)
    assert str(c.value) == str(reference.value)
    assert "Loose.v" in str(c.value) or "Outer.n" in str(c.value)


def test_strings_that_are_not_utf8_fail_as_in_python() -> None:
    for value in ["\ud800", ("ok", "a\udfffb"), Loose(v="\ud800")]:
        with pytest.raises(UnicodeEncodeError):
            _enc(value)
        with pytest.raises(UnicodeEncodeError):
            _enc_py(value)


class Broken(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        raise ValueError("no offset")


def test_odd_values_raise_instead_of_crashing() -> None:
    bad_uuid = uuid.UUID(int=1)
    object.__setattr__(bad_uuid, "int", -1)
    half_pair = st.Pair.__new__(st.Pair)
    rowless = DatedRead.__new__(DatedRead)
    deep: Any = ()
    deep_row: Any = None
    for _ in range(100_000):
        deep = (deep,)
        deep_row = Outer(inner=deep_row, n=0)
    odd: list[tuple[Any, type[BaseException]]] = [
        (bad_uuid, OverflowError),
        (half_pair, AttributeError),
        (rowless, AttributeError),
        (D(2023, 1, 1, tzinfo=Broken()), ValueError),
        (deep, RecursionError),
        (deep_row, RecursionError),
    ]
    for value, error in odd:
        with pytest.raises(error):
            _enc(value)
        with pytest.raises(error):
            identity(value)


def test_encoding_leaves_every_reference_count_as_it_was() -> None:
    read = dated_read()
    parts = [read.meter_id, read.meter_id.int, read.date, read.timestamp, read.value, "é" * 40]
    for _ in range(3):  # warm: a row class's plan and the last timezone are kept
        _enc(dated_read()), identity(dated_read())
    before = [sys.getrefcount(p) for p in parts]
    for _ in range(2000):
        row = dated_read(user_id=2**70)  # beyond 64 bits: through the Python fallback
        _enc((row, tuple(parts), st.Pair(parts[-1], None)))
        identity(Outer(inner=row, n=3))
        encoded = _enc(tuple(parts))
        assert sys.getrefcount(encoded) == 2
    del row, encoded
    assert [sys.getrefcount(p) for p in parts] == before


PURE_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from stepping_django.engine import data, serialize
from tests.engine.test_speedups import CASES
assert serialize._speedups is None and serialize._enc is serialize._enc_py
assert data.Data.__bases__ == (object,) and all(hash(v) == hash(v) for v in CASES)
print(json.dumps([[serialize.dumps(v).hex(), serialize.identity(v).hex()] for v in CASES]))
"""


def test_the_pure_python_encoder_gives_the_same_bytes_and_identities() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PURE_SCRIPT.format(repo=str(REPO))],
        env={**os.environ, "STEPPING_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    pure = json.loads(done.stdout)
    assert pure == [[_pack(v).hex(), reference_identity(v).hex()] for v in CASES]


class Reading(st.Data):
    meter: uuid.UUID
    at: datetime.datetime
    value: float


def dicts_made_by(work: Any) -> int:
    """How many more dict objects the collector sees once `work()` is done."""
    gc.collect()
    before = sum(1 for o in gc.get_objects() if type(o) is dict)
    kept = work()
    gc.collect()
    after = sum(1 for o in gc.get_objects() if type(o) is dict)
    del kept
    return after - before


def test_rows_keep_their_attributes_inline_however_they_are_made_and_encoded() -> None:
    """A row is its class's inline attribute values, not a dict of its own: none is made
    when a row is built, encoded, given its identity, decoded, or decoded and given its
    identity. With a dict each, 100,000 loaded rows held 25 MB more and the collector
    walked 119,000 dicts (the C base type had left out CPython's set-up of inline values,
    and the identity, set after the encoding, was one attribute more than CPython leaves
    room for)."""
    needs_speedups()
    at = D(2023, 1, 1, tzinfo=TZ.utc)

    def made() -> list[Reading]:
        return [Reading(meter=uuid.UUID(int=i), at=at, value=i / 2) for i in range(2000)]

    rows = made()

    def encoded() -> list[Any]:
        return [(serialize.dumps(r), identity(r)) for r in rows]

    def decoded() -> list[Any]:
        return [serialize.loads(serialize.dumps(r)) for r in rows]

    def decoded_with_identity() -> list[Any]:
        out = decoded()
        for r in out:
            identity(r)
        return out

    for work in (made, encoded, decoded, decoded_with_identity):
        assert dicts_made_by(work) < 20, work.__name__
    assert decoded() == rows
    assert [identity(r) for r in decoded()] == [identity(r) for r in rows]


def test_a_rows_hash_is_kept_in_the_row_object_and_computed_once_for_rows_made_otherwise() -> None:
    """The hash __init__ computes goes into the C object (no attribute lookup at each dict
    operation); a row made without __init__ (unpickled) has none until it is first hashed,
    and then the same one."""
    needs_speedups()
    r = Reading(meter=uuid.UUID(int=7), at=D(2023, 1, 1, tzinfo=TZ.utc), value=2)
    assert "_st_hash" not in vars(r)
    assert r._st_hash == hash(r) == hash((type(r).__st_class_id__, r.meter, r.at, 2.0))
    unpickled = pickle.loads(pickle.dumps(r))
    assert not hasattr(unpickled, "_st_hash")
    assert hash(unpickled) == hash(r) and unpickled._st_hash == hash(r)
    assert hash(serialize.loads(serialize.dumps(r))) == hash(r)


@given(values)
def test_group_reduces_row_marks_in_c_are_the_python_ones(value: Any) -> None:
    needs_speedups()
    assert serialize._speedups.row_hashes(value) == row_hashes_py(value)
